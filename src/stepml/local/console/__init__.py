"""The local cloud's web console: executions, each as its workflow graph, lineage, outbox, endpoints.

Tooling, not runtime (it lives under ``stepml.local``): ``server`` serves it on its own port,
``data`` reads through boto3 against the local cloud's endpoint, ``graph`` lays the workflow out
from the definition, ``status`` colours each state from the execution's history, ``svg`` draws
the graph, ``pages`` and ``execution`` write the HTML. It needs no JavaScript and changes nothing.
"""

from stepml.local.console.data import ConsoleData
from stepml.local.console.pages import execution_href, execution_url
from stepml.local.console.server import ConsoleServer

__all__ = ["ConsoleData", "ConsoleServer", "execution_href", "execution_url"]
