"""Pin an overlay's images to a registry and to digests, as the delivery pipeline does before it applies:

    python3 scripts/pin_images.py k8s/overlays/prod --registry crordersprod.azurecr.io \
        --functions sha256:<digest> --websocket sha256:<digest>

Rewrites the overlay's ``images`` entries (``newName`` and ``digest`` instead of ``newTag``), so every pod
runs exactly the image that was built and tested. Standard library only: it runs on a bare CI runner.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

IMAGES = ("orders-functions", "orders-websocket")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def pin(kustomization: str, registry: str, digests: dict[str, str]) -> str:
    for name, digest in digests.items():
        if not DIGEST.fullmatch(digest):
            raise ValueError(f"{name}: {digest!r} is not an image digest (sha256:<64 hex digits>)")
        entry = re.compile(rf"(- name: {name}\n)(\s+)newName: \S+\n\s+(?:newTag|digest): \S+")
        kustomization, found = entry.subn(rf"\1\2newName: {registry}/{name}\n\2digest: {digest}", kustomization)
        if found != 1:
            raise ValueError(f"the overlay has no images entry for {name} with newName and newTag (or digest)")
    return kustomization


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overlay", type=Path, help="the overlay directory, e.g. k8s/overlays/prod")
    parser.add_argument("--registry", required=True, help="the registry's login server, e.g. crordersprod.azurecr.io")
    parser.add_argument("--functions", required=True, help="digest of the orders-functions image")
    parser.add_argument("--websocket", required=True, help="digest of the orders-websocket image")
    options = parser.parse_args(argv)
    path = options.overlay / "kustomization.yaml"
    try:
        path.write_text(pin(path.read_text(), options.registry,
                            {"orders-functions": options.functions, "orders-websocket": options.websocket}))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{path}: images pinned to {options.registry} by digest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
