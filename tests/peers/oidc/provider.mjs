// Test-only OAuth 2.0 / OpenID provider (npm oidc-provider) bound to 127.0.0.1.
// Prints exactly one JSON line to stdout once listening:
//   {"issuer": "http://127.0.0.1:PORT", "port": PORT}
// Everything else (provider notices, errors, OP_LOG) goes to stderr. See README.md.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

// oidc-provider prints its NOTICEs with console.info (stdout): keep stdout for the JSON line.
console.log = console.info = console.debug = (...args) => console.error(...args);
const { default: Provider, errors } = await import('oidc-provider');

const env = process.env;
const num = (name, dflt) => {
  const v = env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${v}`);
  return n;
};
const json = (name, dflt) => (env[name] ? JSON.parse(env[name]) : dflt);

const requestedPort = num('PORT', Number(process.argv[2] ?? 0));
const ACCESS_TOKEN_TTL = num('ACCESS_TOKEN_TTL', 5);
const REFRESH_TOKEN_TTL = num('REFRESH_TOKEN_TTL', 3600);
const EXTRA_TOKEN_DELAY_MS = num('EXTRA_TOKEN_DELAY_MS', 0);
const OP_LOG = Boolean(env.OP_LOG);
// MCP authorization (issue 17): open dynamic client registration, and resource indicators
// (RFC 8707) for the resources listed in RESOURCES, whose access tokens are RFC 9068 JWTs
// with `aud` = the resource and the scopes in RESOURCE_SCOPES. Both off unless asked for.
const REGISTRATION = Boolean(env.REGISTRATION);
const RESOURCES = json('RESOURCES', []);
const RESOURCE_SCOPES = env.RESOURCE_SCOPES || 'mcp:tools';

const clients = json('CLIENTS', [
  {
    client_id: 'roomsvc-web',
    client_secret: 'roomsvc-web-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    application_type: 'web',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: json('REDIRECT_URIS', ['http://127.0.0.1:8765/callback']),
  },
  {
    client_id: 'roomsvc-native',
    token_endpoint_auth_method: 'none',
    application_type: 'native',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    // RFC 8252 loopback rule: any port of http://127.0.0.1/callback matches.
    redirect_uris: json('NATIVE_REDIRECT_URIS', ['http://127.0.0.1/callback']),
  },
]);

// Bind first (port 0 = any free one), then build the provider with the real port in its issuer.
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(requestedPort, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients,
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  cookies: {
    // cookies ignore ports: keep clear of roomsvc's own cookies on 127.0.0.1
    names: { session: '_op_session', interaction: '_op_interaction', resume: '_op_resume' },
    keys: [randomBytes(32).toString('hex')],
  },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
    registration: { enabled: REGISTRATION },
    resourceIndicators: {
      enabled: RESOURCES.length > 0,
      defaultResource: (ctx, client, oneOf) => (oneOf ? oneOf : undefined),
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resourceIndicator) => {
        if (!RESOURCES.includes(resourceIndicator)) throw new errors.InvalidTarget();
        return {
          scope: RESOURCE_SCOPES,
          audience: resourceIndicator,
          accessTokenTTL: ACCESS_TOKEN_TTL,
          accessTokenFormat: 'jwt',
        };
      },
    },
  },
  pkce: { required: () => true }, // oidc-provider 9 only knows S256
  clockTolerance: 0,
  rotateRefreshToken: true, // reuse of a rotated refresh token revokes the grant (provider default)
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  expiresWithSession: async () => false, // refresh tokens outlive the login session
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    RefreshToken: REFRESH_TOKEN_TTL,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 3600,
    Session: 24 * 3600,
    Grant: Math.max(REFRESH_TOKEN_TTL, 24 * 3600),
  },
});

// ---- test hooks: /__stats counters, token delay, web-font stripping ----
const zero = () => ({
  token: { authorization_code: 0, refresh_token: 0, other: 0 },
  token_ok: { authorization_code: 0, refresh_token: 0, other: 0 },
  revocation: 0,
  introspection: 0,
  userinfo: 0,
  grants_revoked: 0,
  registration: 0,
});
let stats = zero();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const FONT_IMPORT = /@import url\(https:\/\/fonts\.googleapis\.com[^)]*\);?/g;

provider.on('grant.revoked', () => { stats.grants_revoked += 1; });
provider.on('server_error', (ctx, err) => console.error('server_error', err));
// invalid_grant answers only say "grant request is invalid"; the reason is in error_detail.
if (OP_LOG) provider.on('grant.error', (ctx, err) => console.error(`grant.error: ${err.error_detail}`));

// provider.use() runs before the provider's own routing, so after `await next()` ctx.oidc holds
// the parsed request (route, params) without us touching the request body.
provider.use(async (ctx, next) => {
  if (ctx.path === '/__stats' && ctx.method === 'GET') {
    ctx.body = stats;
    return;
  }
  if (ctx.path === '/__stats/reset' && ctx.method === 'POST') {
    stats = zero();
    ctx.body = stats;
    return;
  }
  if (EXTRA_TOKEN_DELAY_MS && ctx.path === '/token' && ctx.method === 'POST') {
    await sleep(EXTRA_TOKEN_DELAY_MS);
  }
  try {
    await next();
  } finally {
    const route = ctx.oidc?.route;
    if (route === 'token') {
      const gt = ctx.oidc.params?.grant_type;
      const key = gt === 'authorization_code' || gt === 'refresh_token' ? gt : 'other';
      stats.token[key] += 1;
      if (ctx.status === 200) stats.token_ok[key] += 1;
    } else if (route === 'registration' && ctx.method === 'POST') {
      stats.registration += 1;
    } else if (route === 'revocation' || route === 'introspection' || route === 'userinfo') {
      stats[route] += 1;
    }
    if (typeof ctx.body === 'string' && ctx.body.includes('fonts.googleapis.com')) {
      ctx.body = ctx.body.replace(FONT_IMPORT, '');
    }
    if (OP_LOG) console.error(`${ctx.method} ${ctx.url} -> ${ctx.status}`);
  }
});

server.on('request', provider.callback());

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 500).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
