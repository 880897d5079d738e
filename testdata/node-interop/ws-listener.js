'use strict';
// hyco-ws relayed WebSocket server: prints "ready" once the control channel
// is open, then "message: <text>" for each message received, and echoes it.
// Env: RELAY_URL (ws://HOST:PORT/$hc/ENTITY?sb-hc-action=listen, used
// verbatim), RELAY_KEY_NAME, RELAY_KEY (the token is minted here with the
// package's createRelayToken).
const WebSocket = require('hyco-ws');
const { config, errorText, exitWithStdin } = require('./common');

const cfg = config();
const token = WebSocket.createRelayToken(cfg.url, cfg.keyName, cfg.key);

const server = WebSocket.createRelayedServer({ server: cfg.url, token: token }, (ws) => {
  ws.on('message', (data) => {
    console.log('message: ' + data);
    ws.send(data);
  });
  ws.on('error', (e) => console.error('connection error: ' + errorText(e)));
});
server.on('listening', () => console.log('ready'));
server.on('error', (e) => console.error('control channel error: ' + errorText(e)));
exitWithStdin();
