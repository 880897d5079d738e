import asyncio
import json
import logging
import relaylib
import websockets

# Fixed: the seed read messages from the control channel itself. A Hybrid
# Connections listener receives an "accept" command there and must connect
# to its address (the rendezvous) to get the sender's messages.
async def handle_connection(accept):
    protocol = accept.get("connectHeaders", {}).get("Sec-WebSocket-Protocol")
    subprotocols = [protocol.split(",")[0].strip()] if protocol else None
    async with websockets.connect(accept["address"], subprotocols=subprotocols) as websocket:
        async for message in websocket:
            logging.info("Received message: %s", message)

async def run_application(config):
    serviceNamespace = config["namespace"]
    entityPath = config["path"]
    sasKeyName = config["keyrule"]
    sasKey = config["key"]
    scheme = config.get("scheme", "wss")  # added: "ws" for the local emulator
    serviceNamespace = relaylib.qualifyNamespace(serviceNamespace)  # fixed: no double suffix
    # Configure logging
    logging.basicConfig(level=logging.INFO)  # Enable DEBUG/INFO logging as appropriate

    try:
        logging.debug("Generating SAS Token for: %s", serviceNamespace)
        token = relaylib.createSasToken(serviceNamespace, entityPath, sasKeyName, sasKey)
        logging.debug("Generating WebSocket URI")
        wssUri = relaylib.createListenUrl(serviceNamespace, entityPath, token, scheme)
        async with websockets.connect(wssUri) as control:
            logging.info("Listening for messages on Azure Relay WebSocket...")
            while True:
                command = json.loads(await control.recv())
                if "accept" in command:
                    asyncio.create_task(handle_connection(command["accept"]))
    except KeyboardInterrupt:
        logging.info("Exiting listener.")

if __name__ == "__main__":
    # Load configuration from JSON file
    with open("config.json") as config_file:
       config = json.load(config_file)

    asyncio.run(run_application(config))
