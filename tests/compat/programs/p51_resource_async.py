"""An async resource factory, and a factory that itself takes a resource."""

from typing import Annotated

from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent
from workflows.resource import Resource


class Settings:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix


class Client:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def call(self, path: str) -> str:
        return f"{self.settings.prefix}/{path}"


async def get_settings() -> Settings:
    return Settings(prefix="https://api.example")


def get_client(settings: Annotated[Settings, Resource(get_settings)]) -> Client:
    return Client(settings)


class AsyncResourceFlow(Workflow):
    @step
    async def call(
        self, ev: StartEvent, client: Annotated[Client, Resource(get_client)]
    ) -> StopEvent:
        return StopEvent(result=client.call(ev.path))


async def main(run):
    return await (await run(AsyncResourceFlow(timeout=10), path="v1/items"))
