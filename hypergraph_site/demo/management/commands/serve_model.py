"""`manage.py serve_model`: the trained language model behind an OpenAI-compatible API, every answer captured and
sent to the sidecar (README "Reference model server")."""
from __future__ import annotations

import os
import signal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from hypergraph_site.demo.lm import LM_NAME, dictionary_layers


def _interrupt(signum, frame) -> None:
    """SIGTERM stops serving as Ctrl-C does: the queued captures are sent before the process exits."""
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = ("Serve a trained language model (MODEL_ROOT/<model>) with OpenAI-compatible /v1/completions and "
            "/v1/chat/completions, capturing every answer's residual stream and sending it to the sidecar.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", default=LM_NAME, help=f"a train_lm model under MODEL_ROOT (default {LM_NAME})")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8100)
        parser.add_argument("--sidecar-url", default=os.environ.get("SIDECAR_URL", "http://127.0.0.1:8000"),
                            help="the sidecar that explains the answers (SIDECAR_URL)")
        parser.add_argument("--api-key", default=os.environ.get("SIDECAR_API_KEY", ""),
                            help="a traces:write key of the sidecar (SIDECAR_API_KEY); required unless --no-capture")
        parser.add_argument("--layers", default="", help="layers to capture, e.g. 1,3 (default: the layers the "
                                                         "model's dictionary under MODEL_ROOT/dicts has)")
        parser.add_argument("--no-capture", action="store_true", help="serve without capturing or sending")

    def handle(self, *args, **options) -> None:
        from hypergraph_site.demo.model_server import ModelServer
        from hypergraph_site.demo.openai_http import OpenAIServer
        from ingest.client import IngestClient

        folder = Path(settings.MODEL_ROOT) / options["model"]
        if not (folder / "config.json").is_file():
            raise CommandError(f"no model in {folder}: train one with `manage.py train_lm`")
        sidecar = None
        layers = self._layers(options["layers"], options["model"])
        if not options["no_capture"]:
            if not options["api_key"]:
                raise CommandError("--api-key (or SIDECAR_API_KEY) is needed to send answers to the sidecar; "
                                   "or serve with --no-capture")
            if not layers:
                raise CommandError(f"no layers to capture: give --layers, or train a dictionary for {options['model']}")
            sidecar = IngestClient(options["sidecar_url"], options["api_key"])
        model = ModelServer(folder, layers=layers, sidecar=sidecar, redis_url=settings.REDIS_URL)
        server = OpenAIServer((options["host"], options["port"]), model)
        signal.signal(signal.SIGTERM, _interrupt)
        capture = "off" if sidecar is None else f"layers {layers} -> {options['sidecar_url']}"
        self.stdout.write(f"serving {model.name} on http://{options['host']}:{server.server_port}/v1 "
                          f"(capture {capture})", ending="\n")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
            model.close()

    @staticmethod
    def _layers(spec: str, model: str) -> list[int]:
        if spec:
            try:
                return sorted({int(part) for part in spec.split(",")})
            except ValueError:
                raise CommandError(f"--layers {spec!r} is not a comma-separated list of layer numbers") from None
        return dictionary_layers(Path(settings.MODEL_ROOT) / "dicts", model)
