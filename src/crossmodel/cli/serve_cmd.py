"""`crossmodel serve`: vLLM's OpenAI-compatible server with deltas that requests pick per call (docs/SERVING.md)."""

from __future__ import annotations

import os

import typer

from crossmodel.cli.app import app, one_line_errors
from crossmodel.cli.options import Model


# `@command()` with the context settings that let unknown options (after `--`) through to vLLM
@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@one_line_errors
def serve(
    ctx: typer.Context,
    model: Model,
    deltas: list[str] = typer.Option([], "--delta", help="NAME=DIR: a delta requests ask for by NAME (repeatable)"),
    maps: list[str] = typer.Option([], "--map", help="NAME=MAP_DIR: the token map of a delta in another "
                                                     "vocabulary (`crossmodel map`)"),
    calibrations: list[str] = typer.Option([], "--calibration", help="NAME=CAL: a `crossmodel calibrate` folder "
                                           "made for this model, delta NAME and its map; its α becomes NAME's "
                                           "default (a request's own alpha still wins)"),
    fill: float = typer.Option(0.0, help="logit for user tokens a map leaves unmapped (reference: 0)"),
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port to listen on"),
    dtype: str = typer.Option(None, help="vLLM --dtype (default: vLLM's auto; float32 matches crossmodel generate)"),
    max_model_len: int = typer.Option(None, help="vLLM --max-model-len (context per request)"),
    enforce_eager: bool = typer.Option(False, help="vLLM --enforce-eager (no compilation: faster start on CPU)"),
    served_model_name: str = typer.Option(None, help="the model name clients send (default: the model path)"),
    dry_run: bool = typer.Option(False, help="check everything, print the vLLM command, do not start it"),
) -> None:
    """Serve MODEL with vLLM (OpenAI API: /v1/completions, /v1/chat/completions) and hosted deltas; a request
    picks one with "vllm_xargs": {"delta": NAME, "alpha": 1.0}. Arguments after `--` go to vLLM's server."""
    import shlex

    from crossmodel.eval.calibration import load_calibration
    from crossmodel.serve import (ServerOptions, check_deltas, check_vllm, model_path, named_paths, serve_config,
                                  server_command, server_env)

    if not deltas:
        raise ValueError("give at least one --delta NAME=DIR (a plain model needs no crossmodel: serve it with vLLM "
                         "alone)")
    named, named_maps = named_paths("--delta", deltas), named_paths("--map", maps)
    calibrated = named_paths("--calibration", calibrations)
    serve_config(named, named_maps, fill, dict.fromkeys(calibrated, 0.0))  # names and paths, before any load
    alphas = {name: load_calibration(cal, model, named[name], named_maps.get(name)).alpha
              for name, cal in calibrated.items()}
    config = serve_config(named, named_maps, fill, alphas)
    options = ServerOptions(host, port, dtype, max_model_len, enforce_eager, served_model_name)
    check_vllm()
    path = model_path(model)
    check_deltas(path, config)
    argv = server_command(path, options, ctx.args)
    typer.echo(f"serving {path} with deltas {config.names} on http://{host}:{port}/v1", err=True)
    for name, cal in calibrated.items():
        typer.echo(f"delta {name}: default α = {alphas[name]:g} (calibration {cal})", err=True)
    if dry_run:
        typer.echo(shlex.join(argv))
        return
    os.execve(argv[0], argv, server_env(config, os.environ))  # vLLM's server takes over this process
