import asyncio
import json
import logging
import relaylib
import websockets

async def run_application(message, config):
    service_namespace = config["namespace"]
    entity_path = config["path"]
    sas_key_name = config["keyrule"]
    sas_key = config["key"]
    scheme = config.get("scheme", "wss")  # added: "ws" for the local emulator
    service_namespace = relaylib.qualifyNamespace(service_namespace)  # fixed: no double suffix

    # Configure logging
    # fixed: INFO, not DEBUG; at DEBUG websockets logs the request line, which holds the token
    logging.basicConfig(level=logging.INFO)

    token = relaylib.createSasToken(service_namespace, entity_path, sas_key_name, sas_key)
    logging.debug("Token generated for %s", entity_path)  # fixed: do not log the token
    # fixed: a sender uses the connect URL, not the listen URL
    wss_uri = relaylib.createSendUrl(service_namespace, entity_path, token, scheme)

    try:
        async with websockets.connect(wss_uri) as websocket:
            logging.info("Sending message to Azure Relay WebSocket...")
            await websocket.send(json.dumps({"message": message}))
            logging.info("Message sent: %s", message)
    except Exception as e:
        logging.error("An error occurred: %s", str(e))

if __name__ == "__main__":
    # Load configuration from JSON file
    with open("config.json") as config_file:
        config = json.load(config_file)

    asyncio.run(run_application("This is a message to Azure Relay Hybrid Connections!", config))
