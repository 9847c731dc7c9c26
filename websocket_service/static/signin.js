// Sign-in for the order page: OAuth 2.0 authorization code with PKCE (RFC 7636), the flow a single-page
// app uses with Entra ID, against the issuer the service names in /config.json (the local identity
// provider on a laptop). The access token lives in this tab's sessionStorage only.
"use strict";

const SignIn = (() => {
  const KEY = "orders.signin";
  const PENDING = "orders.signin.pending";
  let config = null;

  const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

  function randomText(length) {
    const bytes = new Uint8Array(length);
    crypto.getRandomValues(bytes);
    return b64url(bytes);
  }

  function claimsOf(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(decodeURIComponent(escape(atob(part))));
    } catch {
      return {};
    }
  }

  async function discovery() {
    const response = await fetch(`${config.authority.replace(/\/$/, "")}/.well-known/openid-configuration`);
    if (!response.ok) throw new Error(`the identity provider answered ${response.status}`);
    return response.json();
  }

  function stored() {
    try {
      const value = JSON.parse(sessionStorage.getItem(KEY) || "null");
      if (value && value.expiresAt > Date.now() + 30_000) return value;
    } catch { /* nothing usable stored */ }
    sessionStorage.removeItem(KEY);
    return null;
  }

  async function start() {
    const verifier = randomText(48);
    const state = randomText(16);
    const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state }));
    const endpoints = await discovery();
    const query = new URLSearchParams({
      client_id: config.clientId, response_type: "code", redirect_uri: redirectUri(), scope: config.scope,
      code_challenge: challenge, code_challenge_method: "S256", state,
    });
    location.assign(`${endpoints.authorization_endpoint}?${query}`);
  }

  function redirectUri() {
    return `${location.origin}${location.pathname}`;
  }

  async function finish(params) {
    const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
    sessionStorage.removeItem(PENDING);
    history.replaceState(null, "", redirectUri());
    if (!pending || params.get("state") !== pending.state) throw new Error("the sign-in answer does not match this tab's request");
    const endpoints = await discovery();
    const response = await fetch(endpoints.token_endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code", client_id: config.clientId, code: params.get("code"),
        redirect_uri: redirectUri(), code_verifier: pending.verifier,
      }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error_description || body.error || `token endpoint answered ${response.status}`);
    const claims = claimsOf(body.access_token);
    const value = { token: body.access_token, expiresAt: Date.now() + 1000 * Number(body.expires_in || 3600),
                    name: claims.name || claims.preferred_username || claims.oid || "signed in" };
    sessionStorage.setItem(KEY, JSON.stringify(value));
    return value;
  }

  return {
    // null: the service names no issuer, so the API is called without a token.
    async init() {
      const response = await fetch("config.json");
      config = response.ok ? (await response.json()).signIn : null;
      if (!config) return { required: false };
      const params = new URLSearchParams(location.search);
      if (params.has("code")) return { required: true, session: await finish(params) };
      if (params.has("error")) {
        history.replaceState(null, "", redirectUri());
        throw new Error(params.get("error_description") || params.get("error"));
      }
      return { required: true, session: stored() };
    },
    start,
    signOut() {
      sessionStorage.removeItem(KEY);
      location.assign(redirectUri());
    },
    headers() {
      const session = config ? stored() : null;
      return session ? { Authorization: `Bearer ${session.token}` } : {};
    },
    get required() {
      return Boolean(config);
    },
  };
})();
