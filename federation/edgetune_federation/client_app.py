"""The ClientApp slot Flower's app format requires.

The federation's clients are edgetune pages speaking the Fleet API themselves
(www/federation/node.js); no Python SuperNode takes part. A SuperNode that joins anyway gets
this app, which replies to every message with an error saying so instead of training.
"""

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

app = ClientApp()


def _refuse(msg: Message, context: Context) -> Message:
    raise RuntimeError(
        "this federation trains edgetune heads in browsers: join it from the edgetune page"
    )


app.train()(_refuse)
app.evaluate()(_refuse)
