import { signRequest } from 'callback-engine/http';

/** Sends a binary-mode CloudEvent, signed for a service with auth: { hmac: { secret } }. */
export async function sendSignedEvent(base: string, secret: string, token: string) {
  const path = '/events';
  const body = JSON.stringify({ amount: 42 });
  const headers = {
    'content-type': 'application/json',
    'ce-specversion': '1.0',
    'ce-id': 'payment-7',
    'ce-source': '/payments',
    'ce-type': 'com.example.payment.done',
    'ce-callbacktoken': token,
    'ce-callbackstatus': 'complete',
  };
  const signature = signRequest({ secret, method: 'POST', path, body, headers });
  return fetch(`${base}${path}`, {
    method: 'POST',
    headers: { ...headers, 'callback-signature': signature },
    body,
  });
}
