"""The outbound WeChat API: wechatpy's client, pointed at the base URL from config, with the access
token kept in a store every process shares (see bot/access_token.py)."""
from __future__ import annotations

import io
import logging
import time
from typing import IO, Any

import requests
from wechatpy.client import WeChatClient
from wechatpy.exceptions import WeChatClientException

from bot.access_token import MemoryTokenStore, Token, TokenStore, is_fresh
from settings import WeChatSettings

logger = logging.getLogger(__name__)

# invalid credential / invalid access_token / access_token expired: worth one retry with a new token.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
DEFAULT_TOKEN_LIFETIME_SECONDS = 7200


class ConfigurableWeChatClient(WeChatClient):
    """wechatpy's client with the token endpoint under API_BASE_URL too (upstream hard-codes it),
    so that a local fake can stand in for api.weixin.qq.com, and the token in `token_store`.

    wechatpy's own retry on 40001 is off: it fetches a token and calls itself again with no limit, so
    an API that keeps answering 40001 would fetch tokens until the stack runs out. Here a request whose
    token is rejected is retried exactly once."""

    def __init__(self, appid: str, secret: str, api_base_url: str, timeout: float,
                 token_store: TokenStore | None = None):
        super().__init__(appid, secret, timeout=timeout, auto_retry=False)
        self.API_BASE_URL = api_base_url if api_base_url.endswith("/") else api_base_url + "/"
        self.token_store: TokenStore = token_store if token_store is not None else MemoryTokenStore()
        self._token: Token | None = None  # this process's copy; the store is read again once it goes stale

    @property
    def access_token(self) -> str:
        if not is_fresh(self._token):
            token = self.token_store.get()
            self._token = token if is_fresh(token) else self.token_store.refresh(self._request_token)
        return self._token.value

    def fetch_access_token(self) -> dict[str, Any]:
        """Replaces the current token (unless another process just did) and returns it as WeChat does."""
        current = self.token_store.get()
        token = self._replace_token(rejected=current.value if current else None)
        return {"access_token": token.value, "expires_in": int(token.expires_at - time.time())}

    def _replace_token(self, rejected: str | None) -> Token:
        self._token = self.token_store.refresh(self._request_token, rejected=rejected)
        return self._token

    def _request_token(self) -> Token:
        """One call to /token (upstream's version has no timeout, and this one runs under a lock)."""
        logger.info("fetching a new WeChat access token")
        params = {"grant_type": "client_credential", "appid": self.appid, "secret": self.secret}
        response = self._http.get(self.API_BASE_URL + "token", params=params, timeout=self.timeout)
        try:
            response.raise_for_status()
        except requests.RequestException as exc:
            raise WeChatClientException(None, None, client=self, request=exc.request,
                                        response=exc.response) from exc
        result = response.json()
        if result.get("errcode"):
            raise WeChatClientException(result["errcode"], result.get("errmsg"), client=self,
                                        request=response.request, response=response)
        lifetime = int(result.get("expires_in", DEFAULT_TOKEN_LIFETIME_SECONDS))
        return Token(result["access_token"], time.time() + lifetime)

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        params = kwargs.get("params")
        if params is not None and (not isinstance(params, dict) or "access_token" in params):
            return super()._request(method, url_or_endpoint, **kwargs)  # the caller chose the credential
        files = _file_positions(kwargs.get("files"))
        token = self.access_token
        try:
            return self._request_with(token, method, url_or_endpoint, kwargs)
        except WeChatClientException as error:
            if error.errcode not in TOKEN_ERRCODES:
                raise
            logger.info("WeChat rejected the access token (%s); retrying once with a fresh one", error.errcode)
        token = self._replace_token(rejected=token).value
        for file, position in files:
            file.seek(position)
        return self._request_with(token, method, url_or_endpoint, kwargs)

    def _request_with(self, token: str, method: str, url_or_endpoint: str, kwargs: dict[str, Any]) -> Any:
        # A copy each time: wechatpy's _request encodes `data` and fills in `params` in place.
        attempt = {**kwargs, "params": {**(kwargs.get("params") or {}), "access_token": token}}
        return super()._request(method, url_or_endpoint, **attempt)


def _file_positions(files: Any) -> list[tuple[IO, int]]:
    """Where each uploaded file object stands now, so that a retry can send it again from there."""
    if not isinstance(files, dict):
        return []
    positions = []
    for value in files.values():
        file = value[1] if isinstance(value, (tuple, list)) and len(value) > 1 else value
        if hasattr(file, "seek") and hasattr(file, "tell"):
            positions.append((file, file.tell()))
    return positions


class WeChatApi:
    """What the conversation needs from WeChat: media in and out, customer-service messages. The token
    store is required: with a per-process token, several processes invalidate each other's tokens."""

    def __init__(self, settings: WeChatSettings, token_store: TokenStore):
        self.client = ConfigurableWeChatClient(settings.appid, settings.secret, settings.api_base_url,
                                               timeout=settings.http_timeout_seconds, token_store=token_store)

    def download_media(self, media_id: str) -> bytes:
        response = self.client.media.download(media_id)
        if isinstance(response, dict):  # an error body that was not an errcode (errcodes raise)
            raise WeChatClientException(None, f"unexpected media response: {response}")
        return response.content

    def upload_image(self, data: bytes, filename: str) -> str:
        result = self.client.media.upload("image", (filename, io.BytesIO(data), "image/jpeg"))
        return result["media_id"]

    def send_text(self, openid: str, text: str) -> None:
        self.client.message.send_text(openid, text)

    def send_image(self, openid: str, media_id: str) -> None:
        self.client.message.send_image(openid, media_id)

    def send_template(self, openid: str, template_id: str, data: dict, client_msg_id: str | None = None) -> None:
        """`client_msg_id`: WeChat sends one message per openid and id within 10 minutes, so a resend after
        a worker died mid-delivery is dropped there (the outbox gives Parcel.provider_key). wechatpy's
        send_template does not pass it."""
        payload = {"touser": openid, "template_id": template_id, "data": data}
        if client_msg_id:
            payload["client_msg_id"] = client_msg_id
        self.client.post("message/template/send", data=payload)
