// A browser-only public client of Gatehouse, on oauth4webapi: discovery,
// the JWKS, the code flow with PKCE, the token endpoint with DPoP, UserInfo,
// refresh and revocation, every call cross-origin. The test (spa.rs) logs
// in at the IdP when the page sends the browser there, then reads #result
// (or #error).
import * as oauth from '/oauth4webapi.js';

const config = JSON.parse(document.getElementById('config').textContent);
const http = { [oauth.allowInsecureRequests]: true }; // the IdP is http on loopback
const client = { client_id: config.client_id };
const issuer = new URL(config.issuer);
const status = (text) => { document.getElementById('status').textContent = text; };

async function discover() {
  const response = await oauth.discoveryRequest(issuer, { ...http, algorithm: 'oidc' });
  return oauth.processDiscoveryResponse(issuer, response);
}

// A request made again once with the server's nonce (RFC 9449 §8): the
// library reads it from the DPoP-Nonce header, which CORS must expose.
async function withNonce(request, process) {
  try {
    return await process(await request());
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err;
    return process(await request());
  }
}

async function start() {
  const as = await discover();
  const codeVerifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const nonce = oauth.generateRandomNonce();
  sessionStorage.setItem('login', JSON.stringify({ codeVerifier, state, nonce }));
  const url = new URL(as.authorization_endpoint);
  url.searchParams.set('client_id', client.client_id);
  url.searchParams.set('redirect_uri', config.redirect_uri);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('scope', 'openid email offline_access');
  url.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(codeVerifier));
  url.searchParams.set('code_challenge_method', 'S256');
  url.searchParams.set('state', state);
  url.searchParams.set('nonce', nonce);
  status('to the IdP');
  location.assign(url.href);
}

async function finish() {
  const { codeVerifier, state, nonce } = JSON.parse(sessionStorage.getItem('login'));
  sessionStorage.removeItem('login');
  const as = await discover();

  // The JWKS, read cross-origin: the ID token's key is published.
  const jwks = await (await fetch(as.jwks_uri)).json();

  const params = oauth.validateAuthResponse(as, client, new URL(location.href), state);
  const keyPair = await oauth.generateKeyPair('ES256');
  const DPoP = oauth.DPoP(client, keyPair);
  const opts = { ...http, DPoP };
  const auth = oauth.None();

  // Code + PKCE, bound to the DPoP key.
  const tokens = await withNonce(
    () => oauth.authorizationCodeGrantRequest(as, client, auth, params, config.redirect_uri, codeVerifier, opts),
    (r) => oauth.processAuthorizationCodeResponse(as, client, r, { expectedNonce: nonce, requireIdToken: true }),
  );
  const claims = oauth.getValidatedIdTokenClaims(tokens);
  const kid = JSON.parse(atob(tokens.id_token.split('.')[0].replace(/-/g, '+').replace(/_/g, '/'))).kid;

  // UserInfo with the bound token.
  const userinfo = await withNonce(
    () => oauth.userInfoRequest(as, client, tokens.access_token, opts),
    (r) => oauth.processUserInfoResponse(as, client, claims.sub, r),
  );

  // Refresh: a new pair, still bound.
  const refreshed = await withNonce(
    () => oauth.refreshTokenGrantRequest(as, client, auth, tokens.refresh_token, opts),
    (r) => oauth.processRefreshTokenResponse(as, client, r),
  );
  const again = await withNonce(
    () => oauth.userInfoRequest(as, client, refreshed.access_token, opts),
    (r) => oauth.processUserInfoResponse(as, client, claims.sub, r),
  );

  // Revocation of the new access token: UserInfo refuses it, and the page
  // can read why (WWW-Authenticate, exposed).
  await oauth.processRevocationResponse(
    await oauth.revocationRequest(as, client, auth, refreshed.access_token, { ...http }),
  );
  let accessAfterRevocation = 'accepted';
  try {
    await withNonce(
      () => oauth.userInfoRequest(as, client, refreshed.access_token, opts),
      (r) => oauth.processUserInfoResponse(as, client, claims.sub, r),
    );
  } catch (err) {
    if (!(err instanceof oauth.WWWAuthenticateChallengeError)) throw err;
    accessAfterRevocation = err.cause.map((c) => `${c.scheme} ${c.parameters.error}`).join(', ');
  }

  // Revocation of the refresh token: it refreshes no more.
  await oauth.processRevocationResponse(
    await oauth.revocationRequest(as, client, auth, refreshed.refresh_token, { ...http }),
  );
  let refreshAfterRevocation = 'accepted';
  try {
    await withNonce(
      () => oauth.refreshTokenGrantRequest(as, client, auth, refreshed.refresh_token, opts),
      (r) => oauth.processRefreshTokenResponse(as, client, r),
    );
  } catch (err) {
    if (!(err instanceof oauth.ResponseBodyError)) throw err;
    refreshAfterRevocation = err.error;
  }

  return {
    issuer: as.issuer,
    sub: claims.sub,
    id_token_kid_published: jwks.keys.some((k) => k.kid === kid),
    token_type: tokens.token_type,
    scope: tokens.scope,
    userinfo,
    refreshed_token_type: refreshed.token_type,
    refreshed_access_token_differs: refreshed.access_token !== tokens.access_token,
    userinfo_after_refresh: again,
    access_after_revocation: accessAfterRevocation,
    refresh_after_revocation: refreshAfterRevocation,
  };
}

async function main() {
  if (new URL(location.href).pathname === '/callback') {
    status('finishing');
    const result = await finish();
    document.getElementById('result').textContent = JSON.stringify(result);
    status('done');
  } else {
    await start();
  }
}

main().catch((err) => {
  document.getElementById('error').textContent = `${err.name}: ${err.message} ${err.code ?? ''} ${JSON.stringify(err.cause ?? null)}`;
  status('failed');
});
