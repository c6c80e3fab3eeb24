// Passkeys on the pages: the navigator.credentials calls and the base64url conversions around
// them, talking to the JSON API (same origin: the session and challenge cookies go along).
// Every control it drives is hidden until this script finds WebAuthn in the browser; without
// JavaScript the pages work for passwords as before.
"use strict";

(() => {
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }

  const toBytes = (text) => {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "===".slice((base64.length + 3) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  };

  const toText = (buffer) => {
    let binary = "";
    for (const byte of new Uint8Array(buffer)) {
      binary += String.fromCharCode(byte);
    }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };

  const descriptors = (list) =>
    (list || []).map((item) => ({ ...item, id: toBytes(item.id) }));

  // The server's JSON options, with their binary members as bytes.
  const creationOptions = (json) => ({
    ...json,
    challenge: toBytes(json.challenge),
    user: { ...json.user, id: toBytes(json.user.id) },
    excludeCredentials: descriptors(json.excludeCredentials),
  });

  const requestOptions = (json) => ({
    ...json,
    challenge: toBytes(json.challenge),
    allowCredentials: descriptors(json.allowCredentials),
  });

  // A credential as the API takes it (PublicKeyCredential.toJSON()'s shape).
  const credentialJSON = (credential) => {
    const response = credential.response;
    const json = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toText(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      json.response.attestationObject = toText(response.attestationObject);
      json.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      json.response.authenticatorData = toText(response.authenticatorData);
      json.response.signature = toText(response.signature);
      json.response.userHandle = response.userHandle ? toText(response.userHandle) : null;
    }
    return json;
  };

  const post = async (path, body) => {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body || {}),
    });
    const answer = response.status === 204 ? {} : await response.json();
    if (!response.ok) {
      throw new Error(answer.message || "Something went wrong.");
    }
    return answer;
  };

  const say = (root, text) => {
    const place = root.querySelector("[data-passkey-error]");
    if (place) {
      place.textContent = text;
      place.hidden = !text;
    }
  };

  const explain = (error) =>
    error.name === "NotAllowedError" || error.name === "AbortError"
      ? "No passkey was used: it was cancelled or timed out."
      : error.message;

  // Sign-in: one request at a time, so the autofill request is ended before a button's.
  let pending = null;

  const signIn = async (root, { mediation, endpoint } = {}) => {
    if (pending) {
      pending.abort();
    }
    const controller = new AbortController();
    pending = controller;
    const options = await post("/api/auth/passkey/options");
    const credential = await navigator.credentials.get({
      publicKey: requestOptions(options),
      signal: controller.signal,
      ...(mediation ? { mediation } : {}),
    });
    pending = null;
    await post(endpoint, { credential: credentialJSON(credential) });
    window.location.assign(root.dataset.next || "/");
  };

  // The security page: adding a passkey.
  for (const form of document.querySelectorAll("form[data-passkey-add]")) {
    form.hidden = false;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      say(form, "");
      try {
        const options = await post("/api/me/passkeys/options");
        const credential = await navigator.credentials.create({
          publicKey: creationOptions(options),
        });
        const name = form.querySelector("input[name=name]").value.trim();
        await post("/api/me/passkeys", {
          credential: credentialJSON(credential),
          ...(name ? { name } : {}),
        });
        window.location.reload();
      } catch (error) {
        say(form, explain(error));
      }
    });
  }
  for (const note of document.querySelectorAll("[data-passkey-unsupported]")) {
    note.hidden = true;
  }

  // The login page and the second step: a button, and (login) the browser's autofill.
  for (const root of document.querySelectorAll("[data-passkey-sign-in]")) {
    const endpoint = root.dataset.endpoint;
    const button = root.querySelector("button");
    root.hidden = false;
    button.addEventListener("click", async () => {
      say(root, "");
      try {
        await signIn(root, { endpoint });
      } catch (error) {
        say(root, explain(error));
      }
    });
    if (root.dataset.autofill !== undefined && PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then((available) => {
        if (available) {
          // Nobody asked for this one: the browser's own refusals (none chosen, a
          // button's request taking over, a host that cannot be a relying party) stay
          // silent; only the server's answer to a chosen passkey is shown.
          signIn(root, { mediation: "conditional", endpoint }).catch((error) => {
            if (!(error instanceof DOMException)) {
              say(root, explain(error));
            }
          });
        }
      });
    }
  }
})();
