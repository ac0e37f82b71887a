"""The outbound WeChat API: wechatpy's client, pointed at the base URL from config."""
from __future__ import annotations

import io

from wechatpy.client import WeChatClient
from wechatpy.exceptions import WeChatClientException

from settings import WeChatSettings


class ConfigurableWeChatClient(WeChatClient):
    """wechatpy's client with the token endpoint under API_BASE_URL too (upstream hard-codes it),
    so that a local fake can stand in for api.weixin.qq.com."""

    def __init__(self, appid: str, secret: str, api_base_url: str, timeout: float):
        super().__init__(appid, secret, timeout=timeout)
        self.API_BASE_URL = api_base_url if api_base_url.endswith("/") else api_base_url + "/"

    def fetch_access_token(self):
        return self._fetch_access_token(
            url=self.API_BASE_URL + "token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )


class WeChatApi:
    """What the conversation needs from WeChat: media in and out, customer-service messages."""

    def __init__(self, settings: WeChatSettings):
        self.client = ConfigurableWeChatClient(settings.appid, settings.secret, settings.api_base_url,
                                               timeout=settings.http_timeout_seconds)

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
