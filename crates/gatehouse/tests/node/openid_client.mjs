// Drives Gatehouse with openid-client v6, unmodified, the way a relier's
// code would: discovery, the code flow with PKCE (and state, nonce, the
// RFC 9207 `iss`), the ID token (ES256 and EdDSA, signatures checked against
// the JWKS), UserInfo, refresh, introspection, revocation, and DPoP with
// ES256 and Ed25519 keys at the token endpoint, UserInfo and a resource
// server on the relier library.
//
// Run by crates/gatehouse/tests/it/openid_client.rs, which starts the
// server, registers the clients and passes them in the environment. The
// person's login happens in the test: for each authorization this script
// prints `AUTHORIZE <url>` and reads back `CALLBACK <url>` on stdin. At the
// end it prints `RESULT <json>`: what the library returned, for the test to
// assert on. Any error ends it with the library's error on stderr and exit
// status 1.

import * as client from 'openid-client';
import { createInterface } from 'node:readline';
import { inspect } from 'node:util';

// Whatever the library throws, shown whole (its OAuth error, the response's
// status, the cause) for the test's failure message.
// (A rejected top-level await is an uncaught exception.)
for (const event of ['uncaughtException', 'unhandledRejection']) {
  process.on(event, (e) => {
    console.error(`openid_client.mjs failed: ${inspect(e, { depth: 6 })}`);
    process.exit(1);
  });
}

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const issuer = new URL(env('ISSUER'));
const confidential = { id: env('CONFIDENTIAL_ID'), secret: env('CONFIDENTIAL_SECRET'), redirect: env('CONFIDENTIAL_REDIRECT') };
const pub = { id: env('PUBLIC_ID'), redirect: env('PUBLIC_REDIRECT') };
const api = { resource: env('API_RESOURCE'), url: new URL(env('API_URL')) };

// stdin, a line at a time: the callback URLs the test sends back.
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Sends the person to `url`; returns where the IdP sent them back. */
async function login(url) {
  console.log(`AUTHORIZE ${url.href}`);
  const { value, done } = await lines.next();
  if (done || !value.startsWith('CALLBACK ')) throw new Error(`expected CALLBACK, got ${value}`);
  return new URL(value.slice('CALLBACK '.length));
}

/** The code flow with PKCE, state and nonce; the token response. */
async function codeFlow(config, redirect, scope, options) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirect,
    scope,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  const callback = await login(url);
  return client.authorizationCodeGrant(
    config,
    callback,
    { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true },
    undefined,
    options,
  );
}

/** What an error the library threw says, or null when none was thrown. */
async function failure(promise) {
  try {
    await promise;
    return null;
  } catch (e) {
    // A WWWAuthenticateChallengeError's cause is the parsed challenges.
    const challenges = Array.isArray(e.cause) ? e.cause : null;
    return { name: e.name, code: e.code ?? null, error: e.error ?? null, status: e.status ?? null, challenges };
  }
}

// http on loopback: openid-client refuses it unless told (its docs).
const insecure = { execute: [client.allowInsecureRequests] };
const result = {};

// --- a confidential client (client_secret_basic) ---------------------------
const conf = await client.discovery(issuer, confidential.id, undefined, client.ClientSecretBasic(confidential.secret), insecure);
// Verify the ID token's signature against the JWKS too.
client.enableNonRepudiationChecks(conf);
result.metadata = conf.serverMetadata();
// RFC 8414's document says the same, and client_secret_post works too.
const oauth2 = await client.discovery(issuer, confidential.id, undefined, client.ClientSecretPost(confidential.secret), {
  ...insecure,
  algorithm: 'oauth2',
});
result.oauth2_metadata = oauth2.serverMetadata();

const tokens = await codeFlow(conf, confidential.redirect, 'openid email offline_access');
const idToken = tokens.claims();
const userinfo = await client.fetchUserInfo(conf, tokens.access_token, idToken.sub);
const introspected = await client.tokenIntrospection(conf, tokens.access_token);
const introspectedPost = await client.tokenIntrospection(oauth2, tokens.access_token);
const refreshed = await client.refreshTokenGrant(conf, tokens.refresh_token);
const refreshedIntrospected = await client.tokenIntrospection(conf, refreshed.access_token);
// The first refresh token was rotated: using it again is refused (and
// revokes the family, RFC 9700 §4.14.2).
const reused = await failure(client.refreshTokenGrant(conf, tokens.refresh_token));
const familyAfterReuse = await client.tokenIntrospection(conf, refreshed.access_token);

// A second sign-on for revocation: the access token, then the refresh token.
const second = await codeFlow(conf, confidential.redirect, 'openid email offline_access');
await client.tokenRevocation(conf, second.access_token, { token_type_hint: 'access_token' });
const revokedAccess = await client.tokenIntrospection(conf, second.access_token);
await client.tokenRevocation(conf, second.refresh_token);
const afterRevocation = await failure(client.refreshTokenGrant(conf, second.refresh_token));

result.confidential = {
  token_type: tokens.token_type,
  scope: tokens.scope ?? null,
  expires_in: tokens.expires_in,
  has_refresh_token: typeof tokens.refresh_token === 'string',
  id_token: idToken,
  id_token_jwt: tokens.id_token,
  userinfo,
  introspected,
  introspected_with_client_secret_post: introspectedPost,
  refreshed: {
    token_type: refreshed.token_type,
    rotated: refreshed.refresh_token !== tokens.refresh_token,
    new_access_token: refreshed.access_token !== tokens.access_token,
    introspected: refreshedIntrospected,
  },
  reused_refresh_token: reused,
  family_after_reuse: familyAfterReuse,
  revoked_access_token: revokedAccess,
  refresh_after_revocation: afterRevocation,
};

// --- DPoP with ES256 and Ed25519 keys ---------------------------------------
// Its ID tokens are signed EdDSA (registered so at the IdP).
const pubConfig = await client.discovery(issuer, pub.id, { id_token_signed_response_alg: 'EdDSA' }, client.None(), insecure);
client.enableNonRepudiationChecks(pubConfig);
result.dpop = {};
for (const alg of ['ES256', 'Ed25519']) {
  const keyPair = await client.randomDPoPKeyPair(alg);
  const jwk = await crypto.subtle.exportKey('jwk', keyPair.publicKey);
  const DPoP = client.getDPoPHandle(pubConfig, keyPair);

  // A public client: its tokens, the refresh token too, are bound.
  const bound = await codeFlow(pubConfig, pub.redirect, 'openid email offline_access', { DPoP });
  const claims = bound.claims();
  const info = await client.fetchUserInfo(pubConfig, bound.access_token, claims.sub, { DPoP });
  const withoutProof = await failure(client.fetchUserInfo(pubConfig, bound.access_token, claims.sub));
  const refreshedBound = await client.refreshTokenGrant(pubConfig, bound.refresh_token, undefined, { DPoP });
  const refreshedInfo = await client.fetchUserInfo(pubConfig, refreshedBound.access_token, claims.sub, { DPoP });
  // Another key cannot use the refresh token.
  const thief = client.getDPoPHandle(pubConfig, await client.randomDPoPKeyPair(alg));
  const stolen = await failure(client.refreshTokenGrant(pubConfig, refreshedBound.refresh_token, undefined, { DPoP: thief }));
  // A public client revokes its own refresh token (no client secret).
  await client.tokenRevocation(pubConfig, refreshedBound.refresh_token);
  const revoked = await failure(client.refreshTokenGrant(pubConfig, refreshedBound.refresh_token, undefined, { DPoP }));

  // The confidential client's own token for the resource server (client
  // credentials, RFC 8707 resource), used there with a proof.
  const confDPoP = client.getDPoPHandle(conf, keyPair);
  const cc = await client.clientCredentialsGrant(conf, { scope: 'reports:read', resource: api.resource }, { DPoP: confDPoP });
  const ccIntrospected = await client.tokenIntrospection(conf, cc.access_token);
  const response = await client.fetchProtectedResource(conf, cc.access_token, api.url, 'GET', undefined, undefined, { DPoP: confDPoP });
  const resource = { status: response.status, body: await response.json() };

  result.dpop[alg] = {
    jwk,
    token_type: bound.token_type,
    access_token: bound.access_token,
    id_token: claims,
    id_token_jwt: bound.id_token,
    userinfo: info,
    userinfo_without_proof: withoutProof,
    refreshed: {
      token_type: refreshedBound.token_type,
      access_token: refreshedBound.access_token,
      rotated: refreshedBound.refresh_token !== bound.refresh_token,
      userinfo: refreshedInfo,
    },
    refresh_with_another_key: stolen,
    refresh_after_revocation: revoked,
    client_credentials: { token_type: cc.token_type, introspected: ccIntrospected },
    resource,
  };
}

console.log(`RESULT ${JSON.stringify(result)}`);
process.exit(0);
