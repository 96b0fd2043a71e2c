"""collect_events over different event types: the step fires once both have arrived, and gets
them in the order of the list it asked for."""

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Weather(Event):
    temp: int


class News(Event):
    headline: str


class Query(Event):
    city: str


class BriefingFlow(Workflow):
    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Query:
        return Query(city=ev.city)

    @step
    async def weather(self, ev: Query) -> Weather:
        return Weather(temp=len(ev.city) * 3)

    @step
    async def news(self, ev: Query) -> News:
        return News(headline=f"{ev.city} wins")

    @step
    async def brief(self, ctx: Context, ev: Weather | News) -> StopEvent | None:
        got = ctx.collect_events(ev, [News, Weather])
        if got is None:
            return None
        news, weather = got
        return StopEvent(result=[type(news).__name__, news.headline, weather.temp])


async def main(run):
    return await (await run(BriefingFlow(timeout=10), city="Oslo"))
