"""The GitHub simulator's commit history: commits on one line, tags, published releases, and
the REST answers built on them, in GitHub's shapes (REST docs: "Compare two commits", "Get the
latest release", "Get a reference"). The bot reads pull requests from merge and squash
subjects, so the simulator has no `commits/{sha}/pulls`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import unquote

from aiohttp import web

from sandbox import github_json as shapes
from sandbox.github_json import Json, Urls
from sandbox.github_routes import SimulatorRoutes, json_response, normalize_ref, not_found
from sandbox.github_runs import commit_sha

COMPARE_COMMITS = 250
COMPARE_FILES = 300


@dataclass(frozen=True)
class SimCommit:
    sha: str
    message: str
    author: str | None
    """The author's GitHub login (None: an e-mail GitHub matches to no account)."""
    files: tuple[str, ...]
    parents: tuple[str, ...]
    at: datetime


@dataclass
class History:
    """The repository's commits (one line, oldest first), tags and published releases."""

    commits: list[SimCommit] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    """Each tag's commit."""
    annotated: dict[str, str] = field(default_factory=dict)
    """The tag object of each annotated tag (its ref names the object, the object the commit)."""
    inner: dict[str, str] = field(default_factory=dict)
    """A tag of a tag: the tag object a tag object names (`git tag -a` of a tag), in place of
    the commit, which the chain's last tag object names."""
    releases: list[tuple[str, datetime]] = field(default_factory=list)
    every_tag: bool = True
    """Until a commit is tagged, every tag exists (at the commit a run on it reports): the
    bot's preflight asks whether the tag started exists, and most tests start tags they never
    pushed. False: only the tags pushed (none)."""

    def tag_sha(self, name: str) -> str | None:
        """The commit of the tag `name`; None when the repository has no such tag."""
        if self.every_tag and not self.tags:
            return commit_sha(name)
        return self.tags.get(name)

    def commit(
        self,
        message: str,
        *,
        at: datetime,
        author: str | None = "octocat",
        files: tuple[str, ...] = ("README.md",),
        parents: tuple[str, ...] | None = None,
    ) -> SimCommit:
        """A commit on top of the line (its parent the previous commit, unless given)."""
        if parents is None:
            parents = () if self.head is None else (self.head,)
        text = f"{len(self.commits)}:{message}"
        sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
        made = SimCommit(sha, message, author, files, parents, at)
        self.commits.append(made)
        return made

    def squash(
        self, title: str, number: int, *, at: datetime, author: str, files: tuple[str, ...]
    ) -> SimCommit:
        """A pull request merged with "Squash and merge": one commit "Title (#N)" by its
        author."""
        return self.commit(f"{title} (#{number})", at=at, author=author, files=files)

    def merge(
        self,
        title: str,
        number: int,
        *,
        at: datetime,
        author: str,
        merger: str,
        files: tuple[str, ...],
    ) -> SimCommit:
        """A pull request merged with a merge commit: its branch's commit by `author`, then
        GitHub's "Merge pull request #N from author/branch" by `merger`, who clicked Merge."""
        base = () if self.head is None else (self.head,)
        work = self.commit(title, at=at, author=author, files=files, parents=base)
        return self.commit(
            f"Merge pull request #{number} from {author}/pr-{number}\n\n{title}",
            at=at,
            author=merger,
            files=(),
            parents=(*base, work.sha),
        )

    @property
    def head(self) -> str | None:
        return self.commits[-1].sha if self.commits else None

    def tag(self, name: str) -> None:
        """Tag the newest commit."""
        if self.head is None:
            raise ValueError("no commit to tag yet")
        self.tags[name] = self.head

    def chain(self, name: str) -> list[str]:
        """The tag objects an annotated tag's ref leads through to its commit, outermost
        first (empty for a lightweight tag)."""
        found = self.annotated.get(name)
        chain: list[str] = []
        while found is not None:
            chain.append(found)
            found = self.inner.get(found)
        return chain

    def publish(self, tag: str, at: datetime) -> None:
        """A published GitHub Release of `tag` (it must be tagged)."""
        if tag not in self.tags:
            raise ValueError(f"no tag {tag}")
        self.releases.append((tag, at))

    def index(self, ref: str, default_branch: str) -> int | None:
        """Where `ref` (a tag, a full or short sha, the default branch) is on the line."""
        ref = normalize_ref(ref)
        if ref == default_branch and self.commits:
            return len(self.commits) - 1
        sha = self.tags.get(ref, ref)
        for at, commit in enumerate(self.commits):
            if len(sha) >= 7 and commit.sha.startswith(sha):
                return at
        return None


def _user(urls: Urls, login: str | None) -> Json | None:
    return None if login is None else shapes.user(urls, login)


def commit_json(urls: Urls, commit: SimCommit) -> Json:
    """A commit as the commits and compare APIs list it."""
    person = {
        "name": commit.author or "Someone",
        "email": f"{commit.author or 'someone'}@users.noreply.github.com",
        "date": shapes.iso(commit.at),
    }
    return {
        "url": f"{urls.repo_api}/commits/{commit.sha}",
        "sha": commit.sha,
        "node_id": f"C_{commit.sha[:20]}",
        "html_url": f"{urls.repo_html}/commit/{commit.sha}",
        "comments_url": f"{urls.repo_api}/commits/{commit.sha}/comments",
        "commit": {
            "url": f"{urls.repo_api}/git/commits/{commit.sha}",
            "author": person,
            "committer": person,
            "message": commit.message,
            "tree": {"sha": commit.sha[::-1], "url": f"{urls.repo_api}/git/trees/{commit.sha}"},
            "comment_count": 0,
        },
        "author": _user(urls, commit.author),
        "committer": _user(urls, commit.author),
        "parents": [
            {
                "sha": parent,
                "url": f"{urls.repo_api}/commits/{parent}",
                "html_url": f"{urls.repo_html}/commit/{parent}",
            }
            for parent in commit.parents
        ],
    }


def _file_json(urls: Urls, path: str, sha: str) -> Json:
    return {
        "sha": hashlib.sha1(f"{sha}:{path}".encode(), usedforsecurity=False).hexdigest(),
        "filename": path,
        "status": "modified",
        "additions": 1,
        "deletions": 0,
        "changes": 1,
        "blob_url": f"{urls.repo_html}/blob/{sha}/{path}",
        "raw_url": f"{urls.repo_html}/raw/{sha}/{path}",
        "contents_url": f"{urls.repo_api}/contents/{path}?ref={sha}",
        "patch": "@@ -0,0 +1 @@\n+changed",
    }


def _at(history: History, ref: str, default_branch: str) -> int:
    found = history.index(ref, default_branch)
    if found is None:
        raise not_found()
    return found


class HistoryRoutes(SimulatorRoutes):
    """compare, git/ref and releases/latest on the simulator's `history`."""

    def register(self, app: web.Application, prefix: str) -> None:
        repo = f"{prefix}/repos/{{owner}}/{{repo}}"
        app.router.add_get(f"{repo}/compare/{{basehead:.+}}", self.compare)
        app.router.add_get(f"{repo}/releases/latest", self.latest_release)
        app.router.add_get(f"{repo}/git/ref/{{ref:.+}}", self.get_ref)
        app.router.add_get(f"{repo}/git/matching-refs/{{ref:.+}}", self.matching_refs)
        app.router.add_get(f"{repo}/git/tags/{{sha}}", self.get_tag)

    async def get_ref(self, request: web.Request) -> web.Response:
        """One tag's reference (GitHub: `tags/<name>`; 404 Not Found when there is no such
        ref): its object is the tagged commit, or an annotated tag's object (`get_tag`)."""
        repository = self._repository(request)
        ref = unquote(request.match_info["ref"])
        kind, _, name = ref.partition("/")
        history = repository.history
        sha = history.tag_sha(name) if kind == "tags" else None
        if sha is None:
            raise not_found()
        urls = repository.urls
        tag_object = history.annotated.get(name)
        return json_response(
            {
                "ref": f"refs/{ref}",
                "node_id": f"REF_{shapes.stable_id(f'ref:{repository.repository}:{ref}')}",
                "url": f"{urls.repo_api}/git/refs/{ref}",
                "object": {
                    "sha": tag_object,
                    "type": "tag",
                    "url": f"{urls.repo_api}/git/tags/{tag_object}",
                }
                if tag_object is not None
                else {"sha": sha, "type": "commit", "url": f"{urls.repo_api}/git/commits/{sha}"},
            }
        )

    async def matching_refs(self, request: web.Request) -> web.Response:
        """The tags whose names start with a prefix (GitHub: `tags/<prefix>`, an empty list
        when none), sorted by name, each as `get_ref` names it (its object a commit)."""
        repository = self._repository(request)
        kind, _, prefix = unquote(request.match_info["ref"]).partition("/")
        names = sorted(repository.history.tags) if kind == "tags" else []
        urls = repository.urls
        return json_response(
            [
                {
                    "ref": f"refs/tags/{name}",
                    "node_id": f"REF_{shapes.stable_id(f'ref:{repository.repository}:{name}')}",
                    "url": f"{urls.repo_api}/git/refs/tags/{name}",
                    "object": {
                        "sha": repository.history.tags[name],
                        "type": "commit",
                        "url": f"{urls.repo_api}/git/commits/{repository.history.tags[name]}",
                    },
                }
                for name in names
                if name.startswith(prefix)
            ]
        )

    async def get_tag(self, request: web.Request) -> web.Response:
        """An annotated tag's object (GitHub: "Get a tag"; 404 Not Found for another sha)."""
        repository = self._repository(request)
        sha = request.match_info["sha"]
        history = repository.history
        named = [name for name in history.annotated if sha in history.chain(name)]
        if not named:
            raise not_found()
        urls = repository.urls
        inner = history.inner.get(sha)
        commit = history.tags[named[0]]
        pointed = (
            {"sha": inner, "type": "tag", "url": f"{urls.repo_api}/git/tags/{inner}"}
            if inner is not None
            else {"sha": commit, "type": "commit", "url": f"{urls.repo_api}/git/commits/{commit}"}
        )
        return json_response(
            {
                "node_id": f"TAG_{shapes.stable_id(f'tag:{sha}')}",
                "tag": named[0],
                "sha": sha,
                "url": f"{urls.repo_api}/git/tags/{sha}",
                "message": f"Release {named[0]}",
                "tagger": {
                    "name": "octocat",
                    "email": "octocat@github.com",
                    "date": "2026-12-01T12:00:00Z",
                },
                "object": pointed,
                "verification": {
                    "verified": False,
                    "reason": "unsigned",
                    "signature": None,
                    "payload": None,
                },
            }
        )

    async def compare(self, request: web.Request) -> web.Response:
        repository = self._repository(request)
        base_ref, sep, head_ref = unquote(request.match_info["basehead"]).partition("...")
        if not sep:
            raise not_found()
        base = _at(repository.history, base_ref, repository.default_branch)
        head = _at(repository.history, head_ref, repository.default_branch)
        commits = repository.history.commits
        ahead = commits[base + 1 : head + 1]
        files = sorted({path for commit in ahead for path in commit.files})
        urls = repository.urls
        base_json = commit_json(urls, commits[min(base, head)])
        refs = f"{base_ref}...{head_ref}"
        permalink = f"{commits[base].sha}...{commits[head].sha}"
        return json_response(
            {
                "url": f"{urls.repo_api}/compare/{refs}",
                "html_url": f"{urls.repo_html}/compare/{refs}",
                "permalink_url": f"{urls.repo_html}/compare/{permalink}",
                "diff_url": f"{urls.repo_html}/compare/{refs}.diff",
                "patch_url": f"{urls.repo_html}/compare/{refs}.patch",
                "base_commit": commit_json(urls, commits[base]),
                "merge_base_commit": base_json,
                "status": "ahead" if head > base else ("identical" if head == base else "behind"),
                "ahead_by": max(head - base, 0),
                "behind_by": max(base - head, 0),
                "total_commits": len(ahead),
                # Unpaginated, GitHub lists the newest 250 ("the last commit in the list is
                # the most recent of the entire comparison"), oldest first.
                "commits": [commit_json(urls, c) for c in ahead[-COMPARE_COMMITS:]],
                "files": [
                    _file_json(urls, path, commits[head].sha) for path in files[:COMPARE_FILES]
                ],
            }
        )

    async def latest_release(self, request: web.Request) -> web.Response:
        """The newest published release (GitHub: 404 Not Found when there is none)."""
        repository = self._repository(request)
        if not repository.history.releases:
            raise not_found()
        tag, at = repository.history.releases[-1]
        release_id = shapes.stable_id(f"release:{repository.repository}:{tag}")
        urls = repository.urls
        return json_response(
            {
                "url": f"{urls.repo_api}/releases/{release_id}",
                "html_url": f"{urls.repo_html}/releases/tag/{tag}",
                "assets_url": f"{urls.repo_api}/releases/{release_id}/assets",
                "upload_url": f"{urls.repo_api}/releases/{release_id}/assets{{?name,label}}",
                "tarball_url": f"{urls.repo_api}/tarball/{tag}",
                "zipball_url": f"{urls.repo_api}/zipball/{tag}",
                "id": release_id,
                "node_id": f"RE_{release_id}",
                "tag_name": tag,
                "target_commitish": repository.default_branch,
                "name": tag,
                "body": "",
                "draft": False,
                "prerelease": False,
                "created_at": shapes.iso(at),
                "published_at": shapes.iso(at),
                "author": shapes.user(urls, self.sim.actor),
                "assets": [],
            }
        )
