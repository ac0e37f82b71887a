"""Links to a gateway's pay page. The order number rides in the link signed, so a link can be
neither forged nor guessed from another order's."""
from __future__ import annotations

from flask import abort
from itsdangerous import BadSignature, URLSafeSerializer


class PayLinks:
    def __init__(self, public_base_url: str, page_path: str, secret_key: str, salt: str):
        self.prefix = f"{public_base_url.rstrip('/')}{page_path}/"
        self.serializer = URLSafeSerializer(secret_key, salt=salt)

    def url(self, out_trade_no: str) -> str:
        return self.url_of_token(self.serializer.dumps(out_trade_no))

    def url_of_token(self, token: str) -> str:
        return self.prefix + token

    def trade_no(self, token: str) -> str:
        """The order number in a link's token; a forged or damaged token is a 404."""
        try:
            return self.serializer.loads(token)
        except BadSignature:
            abort(404)
