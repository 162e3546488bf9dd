// The room console: a person's participant in the browser (docs/console.md).
// Plain script, no framework. Rules kept throughout:
//  * every text that comes from the server or another participant goes into the page
//    with textContent (or an attribute set by setAttribute), never innerHTML;
//  * the token comes from the URL fragment (then removed from the address bar) or is
//    pasted, lives in this tab's sessionStorage, and is sent only in the websocket's
//    `auth` message and in Authorization headers to this origin - never in a URL.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const room = decodeURIComponent(location.pathname.replace(/\/+$/, '').split('/').pop() || '');
  const tokenKey = `roomsvc.console.token.${room}`;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const REQUEST_TIMEOUT_MS = 15000;
  // close codes after which retrying with the same token cannot help (docs/protocol.md)
  const FATAL = { 4001: 'the token is not valid (expired or revoked)', 4003: 'the token has no grant for this room',
    4004: 'there is no such room on this server', 4029: 'too many connections for this identity' };

  let token = null;
  let ws = null;
  let me = null;
  let attempt = 0;
  let retryTimer = null;
  let nextId = 1;
  const pending = new Map();
  const people = new Map();
  const requests = new Map();

  // -- small DOM helpers (text only) --------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'text') node.textContent = String(value);
      else if (key === 'className') node.className = value;
      else if (key === 'onclick') node.addEventListener('click', value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function show(node, visible) { node.hidden = !visible; }

  function when(seconds) {
    if (typeof seconds !== 'number') return '';
    return new Date(seconds * 1000).toLocaleString();
  }

  function bodyText(body) {
    if (typeof body === 'string') return body;
    if (body && typeof body === 'object' && typeof body.text === 'string') return body.text;
    try { return JSON.stringify(body); } catch (e) { return String(body); }
  }

  function setState(state, text) {
    const conn = $('conn');
    conn.dataset.state = state;
    conn.textContent = text;
    show($('reconnect'), state === 'waiting' || state === 'closed');
  }

  // -- the token ------------------------------------------------------------------------------

  function takeToken() {
    const fragment = location.hash.replace(/^#/, '');
    if (fragment) {
      // forget the fragment at once: it must not stay in the address bar or history
      history.replaceState(null, '', location.pathname);
      const params = new URLSearchParams(fragment);
      const given = params.get('token') || (fragment.includes('=') ? null : fragment);
      if (given) sessionStorage.setItem(tokenKey, given.trim());
    }
    return sessionStorage.getItem(tokenKey);
  }

  function forget(reason) {
    sessionStorage.removeItem(tokenKey);
    token = null;
    if (ws) { ws.onclose = null; ws.close(1000); ws = null; }
    clearTimeout(retryTimer);
    show($('console'), false);
    show($('login'), true);
    show($('forget'), false);
    $('login-error').textContent = reason || '';
    setState('idle', 'Not connected');
    $('token-input').focus();
  }

  // -- the websocket ----------------------------------------------------------------------------

  function wsUrl() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${location.host}/v1/rooms/${encodeURIComponent(room)}/ws`;
  }

  function connect() {
    clearTimeout(retryTimer);
    if (!token) return;
    setState('connecting', attempt ? 'Reconnecting…' : 'Connecting…');
    const socket = new WebSocket(wsUrl());
    ws = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: 'auth', token }));
    socket.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame && typeof frame === 'object') dispatch(frame);
    };
    socket.onclose = (event) => {
      if (ws !== socket) return;
      ws = null;
      $('console').dataset.stale = '';  // what is shown may be out of date until the next welcome
      for (const [, p] of pending) { clearTimeout(p.timer); p.reject(new Error('the connection closed')); }
      pending.clear();
      if (FATAL[event.code]) {
        forget(`Disconnected: ${FATAL[event.code]}. Paste a fresh token.`);
        return;
      }
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt) * (0.75 + Math.random() / 2);
      attempt += 1;
      $('conn').dataset.retryMs = String(Math.round(delay));
      setState('waiting', `Disconnected (${event.code || 'no answer'}); retrying in ${Math.ceil(delay / 1000)} s`);
      retryTimer = setTimeout(connect, delay);
    };
  }

  function request(type, data, timeoutMs = REQUEST_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) { reject(new Error('not connected')); return; }
      const id = nextId++;
      const timer = setTimeout(() => { pending.delete(id); reject(new Error('no answer in time')); }, timeoutMs);
      pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ type, id, data }));
    });
  }

  function dispatch(frame) {
    const data = frame.data || {};
    switch (frame.type) {
      case 'response': {
        const p = pending.get(frame.id);
        if (!p) return;
        pending.delete(frame.id);
        clearTimeout(p.timer);
        if (frame.ok) p.resolve(data);
        else p.reject(new Error((frame.error && frame.error.message) || 'refused'));
        return;
      }
      case 'welcome': return welcome(data);
      case 'participant.joined':
      case 'participant.updated': people.set(data.id, data); return renderPeople();
      case 'participant.left': people.delete(data.id); return renderPeople();
      case 'participants.changed':
        // coalesced presence (docs/protocol.md): apply joined, then updated, then left
        for (const p of data.joined || []) people.set(p.id, p);
        for (const p of data.updated || []) people.set(p.id, p);
        for (const p of data.left || []) people.delete(p.id);
        return renderPeople();
      case 'message': return addMessage(data.from, data.body, data.message_type, data.broadcast, false);
      case 'call':
        // a person's console answers no calls; say so instead of letting the caller wait
        if (ws) ws.send(JSON.stringify({ type: 'call.reply', data: { call_id: data.call_id, error: 'a person\'s console does not answer calls' } }));
        return;
      case 'secrets.request_oauth_token': return addOAuthRequest(data);
      case 'secrets.request_secret': return addSecretRequest(data);
      case 'secrets.request_ended': return endRequest(data.request_id, data.outcome);
      case 'secrets.oauth_reauth_required': return loadCredentials();
      default: return undefined;
    }
  }

  function welcome(data) {
    // a secret request is bound to the connection it was pushed to: a new one cannot answer it
    for (const [id, card] of requests) {
      if (card.dataset.kind === 'secret' && !card.dataset.outcome) endRequest(id, 'lost');
    }
    attempt = 0;
    delete $('conn').dataset.retryMs;
    delete $('console').dataset.stale;
    me = data.participant;
    people.clear();
    people.set(me.id, me);
    for (const p of data.participants || []) people.set(p.id, p);
    $('me').textContent = `as ${me.identity} (${me.role})`;
    setState('connected', 'Connected');
    show($('console'), true);
    show($('login'), false);
    show($('forget'), true);
    renderPeople();
    refreshVault();
  }

  // -- people and messages ------------------------------------------------------------------------

  function renderPeople() {
    const list = $('people');
    const select = $('send-to');
    const chosen = select.value;
    list.replaceChildren();
    select.replaceChildren(el('option', { value: '', text: 'Everyone' }));
    const sorted = [...people.values()].sort((a, b) => String(a.identity).localeCompare(String(b.identity)));
    for (const p of sorted) {
      const mine = me && p.id === me.id;
      list.append(el('li', { 'data-identity': p.identity, 'data-role': p.role },
        el('span', { className: 'who', text: p.identity }),
        el('span', { className: `role role-${p.role === 'agent' || p.role === 'tool' ? p.role : 'user'}`, text: p.role }),
        mine ? el('span', { className: 'muted', text: '(you)' }) : null));
      if (!mine) select.append(el('option', { value: p.id, text: `${p.identity} (${p.role})` }));
    }
    if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
    show($('people-empty'), people.size === 0);
  }

  function addMessage(from, body, type, broadcast, outgoing, toName) {
    const who = outgoing ? `you → ${toName}` : `${(from && from.identity) || '?'}${broadcast ? '' : ' → you'}`;
    const item = el('li', { className: outgoing ? 'msg out' : 'msg' },
      el('div', { className: 'meta' },
        el('span', { className: 'who', text: who }),
        type && type !== 'chat' ? el('span', { className: 'muted', text: ` [${type}]` }) : null,
        el('time', { className: 'muted', text: ` ${new Date().toLocaleTimeString()}` })),
      el('div', { className: 'text', text: bodyText(body) }));
    const list = $('messages');
    list.append(item);
    while (list.children.length > 500) list.firstElementChild.remove();
    item.scrollIntoView({ block: 'nearest' });
    show($('messages-empty'), false);
  }

  async function send(event) {
    event.preventDefault();
    const input = $('send-text');
    const to = $('send-to').value;
    const text = input.value;
    if (!text.trim()) return;
    $('send-error').textContent = '';
    const body = { text };
    try {
      if (to) await request('message.send', { to, message_type: 'chat', body });
      else await request('message.broadcast', { message_type: 'chat', body });
      const target = to ? ((people.get(to) || {}).identity || to) : 'everyone';
      addMessage(me, body, 'chat', !to, true, target);
      input.value = '';
    } catch (e) {
      $('send-error').textContent = `Not sent: ${e.message}`;
    }
    input.focus();
  }

  // -- requests addressed to this person ------------------------------------------------------------

  function requestCard(data, kind, title) {
    const from = data.from || {};
    const card = el('article', { className: 'request', 'data-kind': kind, 'data-request-id': data.request_id },
      el('h3', {}, el('span', { className: 'who', text: from.identity || '?' }),
        el('span', { className: `role role-${from.role === 'agent' || from.role === 'tool' ? from.role : 'user'}`, text: from.role || '' }),
        el('span', { text: ` ${title}` })));
    requests.set(data.request_id, card);
    $('requests').prepend(card);
    show($('requests-empty'), false);
    return card;
  }

  function facts(pairs) {
    const dl = el('dl', { className: 'facts' });
    for (const [term, value, cls] of pairs) dl.append(el('dt', { text: term }), el('dd', { className: cls, text: value }));
    return dl;
  }

  function safeLink(url) {
    try {
      const u = new URL(url, location.href);
      return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
    } catch (e) { return null; }
  }

  function addOAuthRequest(data) {
    const req = data.request || {};
    const oauth = req.oauth || {};
    const provider = req.connector || oauth.authorization_endpoint || 'an OAuth provider';
    const card = requestCard(data, 'oauth', `asks you to connect your ${provider} account`);
    const scopes = Array.isArray(oauth.scopes) ? oauth.scopes.join(' ') : String(oauth.scopes || '');
    card.append(facts([
      ['Provider', req.connector ? `${req.connector} (${oauth.authorization_endpoint || ''})` : provider, 'provider'],
      ['Permissions asked', scopes || "the provider's default", 'scopes'],
      ['The credential will belong to', data.owner || (me && me.identity) || '', 'owner'],
      ['Who may use it', (data.usable_by || []).join(', '), 'usable-by'],
      ['Answer before', when(data.expires_at), 'expires'],
    ]));
    const actions = el('div', { className: 'actions' });
    const link = data.start_url ? safeLink(data.start_url) : null;
    if (link) {
      actions.append(el('a', { className: 'button primary authorize', href: link, target: '_blank', rel: 'noopener noreferrer',
        onclick: () => status(card, 'Finish in the window that opened; this page shows the outcome.') }, 'Authorize…'));
    } else {
      actions.append(el('span', { className: 'muted', text: 'This request has no link this console can open.' }));
    }
    actions.append(el('button', { type: 'button', className: 'reject', onclick: () => reject(card, 'secrets.reject_oauth_authorization', data.request_id) }, 'Reject'));
    card.append(actions, el('p', { className: 'status', role: 'status' }));
  }

  function addSecretRequest(data) {
    const req = data.request || {};
    const card = requestCard(data, 'secret', 'asks you for a secret');
    card.append(facts([
      ['What', req.url || '', 'url'],
      ['Type', req.type || 'text/plain', 'type'],
      ['Stored for', data.owner || req.delegate_to || (data.from || {}).identity || '', 'owner'],
      ['Who may use it', (data.usable_by || []).join(', '), 'usable-by'],
    ]));
    const inputId = `secret-${data.request_id}`;
    const input = el('input', { type: 'password', id: inputId, className: 'secret-value', autocomplete: 'off', spellcheck: 'false' });
    const form = el('form', { className: 'actions', autocomplete: 'off' },
      el('label', { for: inputId, text: 'Secret' }), input,
      el('button', { type: 'submit', className: 'primary provide' }, 'Provide'),
      el('button', { type: 'button', className: 'reject', onclick: () => reject(card, 'secrets.reject_secret', data.request_id) }, 'Reject'));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const text = input.value;
      if (!text) { status(card, 'Type the secret first.'); return; }
      try {
        await request('secrets.provide_secret', { request_id: data.request_id, text });
        input.value = '';
        status(card, 'Provided.');
      } catch (e) { status(card, `Not provided: ${e.message}`); }
    });
    // no focus() here: a request must not steal the keyboard from someone typing a message
    card.append(form, el('p', { className: 'status', role: 'status' }));
  }

  function status(card, text) {
    const line = card.querySelector('.status');
    if (line) line.textContent = text;
  }

  async function reject(card, type, requestId) {
    try {
      await request(type, { request_id: requestId, error: 'rejected' });
      status(card, 'Rejected.');
    } catch (e) { status(card, `Could not reject: ${e.message}`); }
  }

  const OUTCOMES = { completed: 'Connected.', provided: 'Provided.', rejected: 'Rejected.', failed: 'Failed.',
    expired: 'Expired.', timeout: 'Expired.', lost: 'The connection dropped, which ended this request; the requester may ask again.' };

  function endRequest(requestId, outcome) {
    const card = requests.get(requestId);
    if (card) {
      card.dataset.outcome = outcome;
      card.classList.add('ended');
      for (const node of card.querySelectorAll('.actions')) node.remove();
      status(card, OUTCOMES[outcome] || `Ended (${outcome}).`);
    }
    refreshVault();
  }

  // -- this identity's vault and audit over HTTP ----------------------------------------------------

  async function api(path, options = {}) {
    const response = await fetch(`/v1/rooms/${encodeURIComponent(room)}${path}`, {
      ...options, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
      headers: { Authorization: `Bearer ${token}` },
    });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const err = body && body.error;
      throw new Error(err ? `${err.name}: ${err.message}` : `HTTP ${response.status}`);
    }
    return body;
  }

  function refreshVault() { loadCredentials(); loadSecrets(); loadAudit(); }

  function loading(stateId, text) { const s = $(stateId); s.textContent = text; s.className = 'empty'; show(s, true); }
  function failed(stateId, e) { const s = $(stateId); s.textContent = `Could not load: ${e.message}`; s.className = 'bad'; show(s, true); }

  function confirmingButton(label, action) {
    // two presses to delete: no modal dialog, keyboard friendly
    const button = el('button', { type: 'button', className: 'small danger' }, label);
    let armed = null;
    button.addEventListener('click', async () => {
      if (!armed) {
        button.textContent = 'Press again to delete';
        armed = setTimeout(() => { armed = null; button.textContent = label; }, 5000);
        return;
      }
      clearTimeout(armed);
      button.disabled = true;
      try { await action(); } catch (e) { button.disabled = false; button.textContent = `Failed: ${e.message}`; }
    });
    return button;
  }

  function deleteSecret(record) {
    const q = record.delegated_to ? `?delegated_to=${encodeURIComponent(record.delegated_to)}` : '';
    return api(`/secrets/${encodeURIComponent(record.id)}${q}`, { method: 'DELETE' }).then(refreshVault);
  }

  async function loadCredentials() {
    if (!token) return;
    loading('credentials-state', 'Loading…');
    let body;
    try { body = await api('/oauth/credentials'); } catch (e) { failed('credentials-state', e); return; }
    const list = $('credentials');
    list.replaceChildren();
    for (const c of body.credentials || []) {
      const badge = el('span', { className: `badge status-${c.status === 'active' ? 'active' : 'reauth'}`, text: c.status });
      const item = el('li', { className: 'credential', 'data-id': c.id, 'data-status': c.status },
        el('div', { className: 'line' }, el('b', { text: c.connector || c.name || c.id }), badge),
        facts([
          ['Account', c.subject || '(not named by the provider)', 'account'],
          ['Scopes', (c.scopes || []).join(' ') || '-', 'scopes'],
          ['Usable by', [c.owner, ...(c.covers || [])].filter((v, i, a) => v && a.indexOf(v) === i).join(', '), 'usable-by'],
          ['Delegated to', c.delegated_to || '-', 'delegated'],
          ['Token expires', when(c.expires_at), 'expires'],
        ]));
      const actions = el('div', { className: 'actions' });
      if (c.status !== 'active') {
        actions.append(el('button', { type: 'button', className: 'primary small reconnect', disabled: !c.connector,
          title: c.connector ? null : 'only connector credentials can be reconnected from here',
          onclick: () => reconnectCredential(c, item) }, 'Reconnect'));
      }
      actions.append(confirmingButton('Delete', () => deleteSecret(c)));
      item.append(actions);
      list.append(item);
    }
    const none = !(body.credentials || []).length;
    $('credentials-state').textContent = none ? 'No OAuth credentials yet.' : '';
    show($('credentials-state'), none);
  }

  async function reconnectCredential(c, item) {
    // ask ourselves for a token: the server pushes a consent request to this page, whose
    // Authorize link runs the provider's consent again; the token it answers is dropped
    const note = el('p', { className: 'status', role: 'status', text: 'A new consent request appears above.' });
    item.append(note);
    try {
      await request('secrets.request_oauth_token', {
        connector: c.connector, from_participant_id: me.id, delegate_to: c.delegated_to || null,
      }, 3600 * 1000);
      note.textContent = 'Reconnected.';
    } catch (e) { note.textContent = `Not reconnected: ${e.message}`; }
    loadCredentials();
  }

  async function loadSecrets() {
    if (!token) return;
    loading('secrets-state', 'Loading…');
    let body;
    try { body = await api('/secrets'); } catch (e) { failed('secrets-state', e); return; }
    const plain = (body.secrets || []).filter((s) => s.kind !== 'oauth');
    const list = $('secrets');
    list.replaceChildren();
    for (const s of plain) {
      list.append(el('li', { className: 'secret', 'data-id': s.id },
        el('div', { className: 'line' }, el('b', { text: s.name || s.id }), el('span', { className: 'muted', text: s.type })),
        facts([['Id', s.id, 'id'], ['Delegated to', s.delegated_to || '-', 'delegated'],
          ['Version', String(s.version), 'version'], ['Updated', when(s.updated_at), 'updated']]),
        el('div', { className: 'actions' }, confirmingButton('Delete', () => deleteSecret(s)))));
    }
    $('secrets-state').textContent = plain.length ? '' : 'No room secrets.';
    show($('secrets-state'), !plain.length);
  }

  // audit outcomes that are not a refusal or a failure
  const FINE = new Set(['ok', 'completed', 'provided', 'pending']);

  async function loadAudit() {
    if (!token) return;
    loading('audit-state', 'Loading…');
    let body;
    try { body = await api('/audit?limit=200'); } catch (e) { failed('audit-state', e); return; }
    // this console lists the vault on every refresh: its own `list` lines would drown the rest
    const all = (body.audit || []).slice().reverse();
    const rows = all.filter((r) => !(me && r.actor === me.identity && r.action === 'list'));
    const hidden = all.length - rows.length;
    const tbody = $('audit').tBodies[0];
    tbody.replaceChildren();
    for (const r of rows) {
      tbody.append(el('tr', { className: `outcome-${FINE.has(r.outcome) ? 'ok' : 'other'}` },
        el('td', { text: when(r.time) }), el('td', { text: r.actor }), el('td', { text: r.action }),
        el('td', { text: r.owner && r.owner !== (me && me.identity) ? `${r.secret_id || ''} (of ${r.owner})` : (r.secret_id || '') }),
        el('td', { text: r.channel }), el('td', { text: r.detail ? `${r.outcome}: ${r.detail}` : r.outcome })));
    }
    const note = hidden ? ` (${hidden} listing${hidden > 1 ? 's' : ''} by you not shown)` : '';
    $('audit-state').textContent = rows.length ? note.trim() : `Nothing recorded yet.${note}`;
    show($('audit-state'), !rows.length || hidden > 0);
  }

  // -- start -----------------------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    $('room-name').textContent = room;
    document.title = `${room} · roomsvc console`;
    $('login-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const value = $('token-input').value.trim();
      if (!value) return;
      $('token-input').value = '';
      sessionStorage.setItem(tokenKey, value);
      token = value;
      $('login-error').textContent = '';
      attempt = 0;
      connect();
    });
    $('send-form').addEventListener('submit', send);
    $('reconnect').addEventListener('click', () => { attempt = 0; connect(); });
    $('forget').addEventListener('click', () => forget('Token forgotten.'));
    $('audit-refresh').addEventListener('click', loadAudit);
    token = takeToken();
    if (token) connect();
    else forget('');
  });
})();
