'use strict';
// hyco-ws relayedConnect: sends RELAY_MESSAGE once connected, prints
// "echo: <text>" for the first message received, and exits 0.
// Env: RELAY_URL (ws://HOST:PORT/$hc/ENTITY?sb-hc-action=connect, used
// verbatim), RELAY_KEY_NAME, RELAY_KEY, RELAY_MESSAGE.
const WebSocket = require('hyco-ws');
const { config, errorText, exitWithStdin } = require('./common');

const cfg = config();
const message = process.env.RELAY_MESSAGE || 'hello from node';
const token = WebSocket.createRelayToken(cfg.url, cfg.keyName, cfg.key);

const client = WebSocket.relayedConnect(cfg.url, token, (ws) => {
  console.log('connected');
  ws.send(message);
});
client.on('message', (data) => {
  console.log('echo: ' + data);
  client.close();
  process.exit(0);
});
client.on('error', (e) => {
  console.error('error: ' + errorText(e));
  process.exit(1);
});
exitWithStdin();
