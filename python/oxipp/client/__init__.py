"""The oxipp client: Client, views, AsyncResult, magics (see oxipp.client.client)."""
