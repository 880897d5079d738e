import base64
import hashlib
import hmac
import math
import time
import urllib.parse  # fixed: "import urllib" does not import urllib.parse

# Function which generates the HMAC-SHA256 of a given message
def hmac_sha256(key, msg):
   # fixed: hashlib.sha256 instead of the private hashlib._hashlib.openssl_sha256
   hash_obj = hmac.new(key=key, msg=msg, digestmod=hashlib.sha256)
   return hash_obj.digest()

# Function which qualifies the namespace from config.json: a bare name gets
# ".servicebus.windows.net"; a qualified name or host:port (the local
# emulator, e.g. "127.0.0.1:8090") is used as is.
# (fixed: the seed appended the suffix even to fully qualified names)
def qualifyNamespace(serviceNamespace):
   if "." in serviceNamespace or ":" in serviceNamespace:
       return serviceNamespace
   return serviceNamespace + ".servicebus.windows.net"

# Function to create a WebSocket URL for listening for a server application
# (added: scheme, "ws" for the local emulator's plain ws://)
def createListenUrl(serviceNamespace, entityPath, token = None, scheme = 'wss'):
   url = scheme + '://' + serviceNamespace + '/$hc/' + entityPath + '?sb-hc-action=listen&sb-hc-id=123456'
   if token is not None:
       url = url + '&sb-hc-token=' + urllib.parse.quote(token)
   return url

# Function which creates the url for the client application
# (fixed: indentation; added: scheme)
def createSendUrl(serviceNamespace, entityPath, token = None, scheme = 'wss'):
   url = scheme + '://' + serviceNamespace + '/$hc/' + entityPath + '?sb-hc-action=connect&sb-hc-id=123456'
   if token is not None:
       url = url + '&sb-hc-token=' + urllib.parse.quote(token)
   return url

# Function which creates the Service Bus SAS token. 
def createSasToken(serviceNamespace, entityPath, sasKeyName, sasKey):
   uri = "http://" + serviceNamespace + "/" + entityPath
   encodedResourceUri = urllib.parse.quote(uri, safe = '')

   # Define the token validity period in seconds (48 hours in this case)   
   tokenValidTimeInSeconds = 60 * 60 * 48 
   unixSeconds = math.floor(time.time())
   expiryInSeconds = unixSeconds + tokenValidTimeInSeconds

   # Create the plain signature string by combining the encoded URI and the expiry time
   plainSignature = encodedResourceUri + "\n" + str(expiryInSeconds)

   # Encode the SAS key and the plain signature as bytes
   sasKeyBytes = sasKey.encode("utf-8")
   plainSignatureBytes = plainSignature.encode("utf-8")
   hashBytes = hmac_sha256(sasKeyBytes, plainSignatureBytes)
   base64HashValue = base64.b64encode(hashBytes)

   # Construct the SAS token string
   token = "SharedAccessSignature sr=" + encodedResourceUri + "&sig=" +  urllib.parse.quote(base64HashValue) + "&se=" + str(expiryInSeconds) + "&skn=" + sasKeyName
   return token
