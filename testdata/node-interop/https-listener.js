'use strict';
// hyco-https relayed HTTP server: prints "ready" once listen() has opened
// the control channel, then "request: METHOD URL BYTES CHANNEL" per request
// (CHANNEL: "control" for an inline request, "rendezvous" for one read from
// a rendezvous WebSocket, a field of the package's ServerResponse). It
// answers 201 with X-Echo-Method and X-Echo-Url headers and the request body
// as the response body.
// Env: RELAY_URL (ws://HOST:PORT/$hc/ENTITY?sb-hc-action=listen, used
// verbatim), RELAY_KEY_NAME, RELAY_KEY.
const https = require('hyco-https');
const { config, errorText, exitWithStdin } = require('./common');

const cfg = config();
const token = https.createRelayToken(cfg.url, cfg.keyName, cfg.key);

const server = https.createRelayedServer({ server: cfg.url, token: token }, (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c)));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const channel = res._rendezvousChannel ? 'rendezvous' : 'control';
    console.log('request: ' + req.method + ' ' + req.url + ' ' + body.length + ' ' + channel);
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('X-Echo-Method', req.method);
    res.setHeader('X-Echo-Url', req.url);
    res.statusCode = 201;
    res.end(body);
  });
});
server.on('listening', () => console.log('ready'));
server.on('error', (e) => console.error('control channel error: ' + errorText(e)));
server.listen();
exitWithStdin();
