"""The local Hub-protocol server used by the Hub tests (test support only).

The server itself lives in hcam.hub_cards.local_hub so that the demo can start it too; this file re-exports it
and runs it from the command line:

    python tests/hub_server.py --port 0 --root DIR      # prints the URL on the first line of stdout
"""
from hcam.hub_cards.local_hub import LocalHubServer, main

__all__ = ["LocalHubServer", "main"]

if __name__ == "__main__":
    main()
