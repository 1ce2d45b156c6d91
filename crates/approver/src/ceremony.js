// Portcullis passkey ceremonies, browser side (no build step, no external fetches).
//
// The server's options are JSON with every binary field as unpadded base64url;
// navigator.credentials wants ArrayBuffers, and its answer holds ArrayBuffers too.
// portcullisEnrol(options) and portcullisAssert(options) convert both ways, run the ceremony
// and resolve to the JSON object to POST back (or reject with the browser's error, for
// example NotAllowedError when the person cancels or no enrolled passkey is at hand).
'use strict';

function portcullisDecode(text) {
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer;
}

function portcullisEncode(buffer) {
  let binary = '';
  for (const byte of new Uint8Array(buffer)) {
    binary += String.fromCharCode(byte);
  }
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function portcullisCredentials(list) {
  return (list || []).map((credential) => ({ ...credential, id: portcullisDecode(credential.id) }));
}

async function portcullisEnrol(options) {
  const publicKey = {
    ...options.publicKey,
    challenge: portcullisDecode(options.publicKey.challenge),
    user: { ...options.publicKey.user, id: portcullisDecode(options.publicKey.user.id) },
    excludeCredentials: portcullisCredentials(options.publicKey.excludeCredentials),
  };
  const credential = await navigator.credentials.create({ publicKey });
  const response = credential.response;
  return {
    id: credential.id,
    rawId: portcullisEncode(credential.rawId),
    type: credential.type,
    response: {
      attestationObject: portcullisEncode(response.attestationObject),
      clientDataJSON: portcullisEncode(response.clientDataJSON),
      transports: typeof response.getTransports === 'function' ? response.getTransports() : undefined,
    },
    extensions: credential.getClientExtensionResults(),
  };
}

async function portcullisAssert(options) {
  const publicKey = {
    ...options.publicKey,
    challenge: portcullisDecode(options.publicKey.challenge),
    allowCredentials: portcullisCredentials(options.publicKey.allowCredentials),
  };
  const credential = await navigator.credentials.get({ publicKey });
  const response = credential.response;
  return {
    id: credential.id,
    rawId: portcullisEncode(credential.rawId),
    type: credential.type,
    response: {
      authenticatorData: portcullisEncode(response.authenticatorData),
      clientDataJSON: portcullisEncode(response.clientDataJSON),
      signature: portcullisEncode(response.signature),
      userHandle: response.userHandle ? portcullisEncode(response.userHandle) : null,
    },
    extensions: credential.getClientExtensionResults(),
  };
}
