"""The threads PyGithub's synchronous calls run in, shared by every repository's transport."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor


class GitHubWorkers:
    """A thread pool and the share of it the poller may hold (all workers but one, so a
    person's call never queues behind polls). The app keeps one for all its services: a few
    threads serve hundreds of repositories, instead of a pool (and its threads' memory) per
    repository."""

    def __init__(self, max_workers: int = 4) -> None:
        if max_workers < 2:
            raise ValueError("max_workers must be at least 2: one is kept for people's calls")
        self.max_workers = max_workers
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="github")
        self.polls = asyncio.Semaphore(max_workers - 1)
        """The workers the poller may hold at once."""

    async def close(self) -> None:
        """Wait for the calls in flight, then release the threads."""
        await asyncio.get_running_loop().run_in_executor(None, self.pool.shutdown)
