"""`POST /repos/{owner}/{repo}/actions/jobs/{job_id}/rerun`: re-run one job of a completed run
and the jobs that depend on it, as GitHub does (`ActionsEngine.rerun_job`): `201 Created` with
an empty object, `403` while the run still goes (or past its 30 days, or 50 re-runs)."""

from __future__ import annotations

from aiohttp import web

from sandbox.github_routes import ACTOR, SimulatorRoutes, json_response, not_found


class JobRerunRoutes(SimulatorRoutes):
    """Re-running one job of a run (a rollback job that failed, say)."""

    def register(self, app: web.Application, prefix: str) -> None:
        path = f"{prefix}/repos/{{owner}}/{{repo}}/actions/jobs/{{job_id:\\d+}}/rerun"
        app.router.add_post(path, self.rerun_job)

    async def rerun_job(self, request: web.Request) -> web.Response:
        repository = self._repository(request)
        job_id = int(request.match_info["job_id"])
        run = next(
            (r for r in repository.runs.values() if any(j.id == job_id for j in r.jobs)), None
        )
        if run is None:
            raise not_found()
        repository.engine.rerun_job(run.id, job_id, by=request[ACTOR])
        repository.engine.process()
        return json_response({}, status=201)
