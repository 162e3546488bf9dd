"""Toolkit ``secrets``, second half: asking participants for secrets and OAuth tokens.

The MeshAgent form of the native ops in :mod:`roomsvc.transport.ws.oauth_ops`, over the
same services: :class:`~roomsvc.domain.secret_requests.SecretRequestService` and
:class:`~roomsvc.domain.oauth.service.OAuthService` decide everything (the ``secrets``
grant and its ``request_oauth_token`` allow-list, who may answer, timeouts); this module
reads SDK 0.44's fields and shapes its replies (docs/meshagent.md):

* ``request_secret`` json ``{url, type, participant_id, timeout, delegate_to}`` -> file
  (the value);
* ``provide_secret`` binary, headers ``{request_id, error}``, bytes = the value; a
  non-empty ``error`` rejects -> empty;
* ``delete_requested_secret`` json ``{url, type, delegated_to}`` -> empty;
* ``request_oauth_token`` json ``{connector, oauth, redirect_uri, participant_id, timeout,
  delegate_to}`` -> json ``{access_token}``;
* ``get_offline_oauth_token`` json ``{connector, oauth, delegated_to, delegated_by}`` ->
  json ``{access_token}`` (null when nothing usable is stored for the caller);
* ``provide_oauth_authorization`` json ``{request_id, code, error}``; ``error`` rejects
  -> empty.

The participant asked gets the request as a push (:mod:`.notices`). A MeshAgent
consenter answers the MeshAgent way (its app runs the redirect with the request's
``redirect_uri`` and hands over the code); a native consenter gets roomsvc's start link,
whoever asked.
"""

from __future__ import annotations

from roomsvc.transport.fields import asked_participant, oauth_client, opt_seconds, opt_str, req_str
from roomsvc.transport.meshagent.packing import Content, EmptyContent, FileContent, JsonContent, content_data
from roomsvc.transport.meshagent.tools import ToolContext, fields, tool

# -- plain secrets -------------------------------------------------------------------------------


@tool("secrets", "request_secret")
async def request_secret(ctx: ToolContext, content: Content) -> Content:
    """Ask ``participant_id`` and wait; the value comes back as a file content (the SDK
    returns its bytes) and is stored as a secret of the caller or of ``delegate_to``."""
    data = fields(content)
    provided = await ctx.services.secret_requests.request(
        ctx.participant, url=req_str(data, "url"), type=opt_str(data, "type"),
        from_participant_id=asked_participant(data), timeout=opt_seconds(data), delegate_to=opt_str(data, "delegate_to"),
    )
    return FileContent(name=provided.record.name, mime_type=provided.record.type, data=provided.value.reveal())


@tool("secrets", "provide_secret")
async def provide_secret(ctx: ToolContext, content: Content) -> Content:
    """``provide_secret`` and ``reject_secret`` are both this tool: a non-empty ``error``
    rejects, otherwise the bytes are the answer. The provider's reply is queued before
    the requester resumes."""
    data = fields(content)
    request_id = req_str(data, "request_id")
    error = opt_str(data, "error")
    if error is not None:
        ctx.services.secret_requests.reject(ctx.participant, request_id, error)
    else:
        ctx.services.secret_requests.provide(ctx.participant, request_id, content_data(content))
    return EmptyContent()


@tool("secrets", "delete_requested_secret")
async def delete_requested_secret(ctx: ToolContext, content: Content) -> Content:
    """A secret obtained with ``request_secret``; missing is NOT_FOUND (1003)."""
    data = fields(content)
    await ctx.services.secret_requests.delete_requested(
        ctx.participant.principal, ctx.room, url=req_str(data, "url"), type=opt_str(data, "type"),
        delegated_to=opt_str(data, "delegated_to"),
    )
    return EmptyContent()


# -- OAuth -----------------------------------------------------------------------------------------


@tool("secrets", "request_oauth_token")
async def request_oauth_token(ctx: ToolContext, content: Content) -> Content:
    """A stored token the consent covers (refreshed when due), or a new consent by
    ``participant_id``. ``redirect_uri`` is the consenting app's own (the MeshAgent way);
    a native consenter uses roomsvc's callback instead."""
    data = fields(content)
    grant = await ctx.services.oauth.request_token(
        ctx.participant, from_participant_id=asked_participant(data), delegate_to=opt_str(data, "delegate_to"),
        timeout=opt_seconds(data), redirect_uri=opt_str(data, "redirect_uri"), **oauth_client(data),
    )
    return JsonContent({"access_token": grant.access_token})


@tool("secrets", "get_offline_oauth_token")
async def get_offline_oauth_token(ctx: ToolContext, content: Content) -> Content:
    """A usable stored token without asking anyone; ``{"access_token": null}`` when there
    is none the caller's identity is covered by."""
    data = fields(content)
    grant = await ctx.services.oauth.offline_token(
        ctx.participant.principal, ctx.room, delegated_to=opt_str(data, "delegated_to"),
        delegated_by=opt_str(data, "delegated_by"), **oauth_client(data),
    )
    return JsonContent({"access_token": grant.access_token if grant is not None else None})


@tool("secrets", "provide_oauth_authorization")
async def provide_oauth_authorization(ctx: ToolContext, content: Content) -> Content:
    """``provide_oauth_authorization`` (the code) and ``reject_oauth_authorization`` (an
    ``error``) are both this tool. Answers once the code is exchanged and stored."""
    data = fields(content)
    request_id = req_str(data, "request_id")
    error = opt_str(data, "error")
    if error is not None:
        await ctx.services.oauth.reject_authorization(ctx.participant, request_id, error)
    else:
        await ctx.services.oauth.provide_authorization(ctx.participant, request_id, req_str(data, "code"))
    return EmptyContent()
