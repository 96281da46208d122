// Real OAuth 2.0 / OpenID Connect authorization server for the oauth2_token_manager tests.
//
// Built on npm `oidc-provider` (see node_modules/oidc-provider/lib/helpers/defaults.js for every
// option). Started by tests/_authserver.py; plain http on 127.0.0.1 only; all state in memory.
//
// Environment:
//   AS_PORT                  port to listen on (required)
//   AS_ISSUER                issuer identifier, no path (default http://127.0.0.1:$AS_PORT)
//   AS_ACCESS_TOKEN_TTL      seconds, AccessToken and ClientCredentials (default 3600)
//   AS_REFRESH_TOKEN_TTL     seconds (default 86400)
//   AS_ROTATE_REFRESH_TOKEN  1 = every refresh returns a new refresh token, 0 = keep it (default 1)
//   AS_ID_TOKEN_TTL          seconds (default 3600)
//   AS_TOKEN_DELAY_MS        optional extra latency added to every POST /token (default 0)
//
// Test-only routes (not part of OAuth):
//   GET  /test/counters        {"total": N, "by_grant_type": {...}, "failed_by_grant_type": {...}}
//   POST /test/counters/reset  zeroes the counters (204)
//
// Prints exactly one line "READY <issuer>" on stdout once it accepts connections.

import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';

import Provider from 'oidc-provider';

function intEnv(name, fallback, min = 1) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

const port = intEnv('AS_PORT', undefined);
if (port === undefined) {
  console.error('AS_PORT is required');
  process.exit(2);
}
const issuer = process.env.AS_ISSUER || `http://127.0.0.1:${port}`;
const accessTokenTTL = intEnv('AS_ACCESS_TOKEN_TTL', 3600);
const refreshTokenTTL = intEnv('AS_REFRESH_TOKEN_TTL', 86400);
const idTokenTTL = intEnv('AS_ID_TOKEN_TTL', 3600);
const tokenDelayMs = intEnv('AS_TOKEN_DELAY_MS', 0, 0);
const rotateSetting = process.env.AS_ROTATE_REFRESH_TOKEN || '1';
if (rotateSetting !== '0' && rotateSetting !== '1') {
  throw new Error(`AS_ROTATE_REFRESH_TOKEN must be 1 or 0, got ${JSON.stringify(rotateSetting)}`);
}
const rotateRefreshTokens = rotateSetting === '1';

// Fixed test clients, shared with the Python helpers (oidc-provider client metadata, keyed by id).
const clients = Object.values(
  JSON.parse(readFileSync(new URL('./clients.json', import.meta.url), 'utf8')),
);

// Server signing key (ID tokens), fresh at every start.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }), kid: `as-${Date.now()}`, alg: 'RS256', use: 'sig',
};

// Every user exists; the login name is the subject.
async function findAccount(ctx, sub) {
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        name: `Test User ${sub}`,
        preferred_username: sub,
        email: `${sub}@example.test`,
        email_verified: true,
      };
    },
  };
}

const configuration = {
  clients,
  findAccount,
  jwks: { keys: [signingKey] },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'api:read', 'api:write', 'api:admin'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
  },
  // Interaction cookies: plain http on loopback, so never `secure`; signed with a per-start key.
  cookies: {
    keys: [crypto.randomBytes(32).toString('base64url')],
    long: { httpOnly: true, sameSite: 'lax', secure: false },
    short: { httpOnly: true, sameSite: 'lax', secure: false },
  },
  features: {
    devInteractions: { enabled: true }, // built-in login + consent forms, driven by _authserver.py
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // Any authenticated client may introspect any token.
      allowedPolicy: async () => true,
    },
    revocation: { enabled: true },
    jwtUserinfo: { enabled: true }, // userinfo as a signed JWT for clients that ask for it
    // Enabled by default in v9; without a `resource` parameter access tokens stay opaque.
    resourceIndicators: { enabled: true },
  },
  // Authorization code with or without PKCE (S256 only when used).
  pkce: { required: () => false },
  // A refresh token whenever offline_access was granted (the auth request needs prompt=consent).
  issueRefreshToken: async (ctx, client, code) => code.scopes.has('offline_access'),
  rotateRefreshToken: () => rotateRefreshTokens,
  ttl: {
    AccessToken: accessTokenTTL,
    ClientCredentials: accessTokenTTL,
    RefreshToken: refreshTokenTTL,
    IdToken: idTokenTTL,
    AuthorizationCode: 60,
    Interaction: 600,
    Session: 86400,
    Grant: 86400,
  },
};

const provider = new Provider(issuer, configuration);

// Unexpected failures go to stderr (expected OAuth errors such as invalid_grant do not).
provider.on('server_error', (ctx, err) => console.error('server_error', err));

// Token-endpoint request counters, by grant_type, plus the test routes that expose them.
function emptyCounters() {
  return { total: 0, by_grant_type: {}, failed_by_grant_type: {} };
}
let counters = emptyCounters();
const tokenPath = '/token'; // routes are served at the root: AS_ISSUER must have no path

provider.use(async (ctx, next) => {
  if (ctx.path === '/test/counters' && ctx.method === 'GET') {
    ctx.set('cache-control', 'no-store');
    ctx.body = counters;
    return;
  }
  if (ctx.path === '/test/counters/reset' && ctx.method === 'POST') {
    counters = emptyCounters();
    ctx.status = 204;
    return;
  }
  if (ctx.path !== tokenPath || ctx.method !== 'POST') {
    await next();
    return;
  }
  if (tokenDelayMs) await delay(tokenDelayMs);
  try {
    await next();
  } finally {
    // Parameters are parsed by oidc-provider before client authentication, so the grant type
    // is known even for requests it rejects.
    const grantType = ctx.oidc?.params?.grant_type || 'unknown';
    counters.total += 1;
    counters.by_grant_type[grantType] = (counters.by_grant_type[grantType] || 0) + 1;
    if (ctx.status >= 400) {
      const failed = counters.failed_by_grant_type;
      failed[grantType] = (failed[grantType] || 0) + 1;
    }
  }
});

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});
server.on('error', (err) => {
  console.error(`cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
