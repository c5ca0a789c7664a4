"""Local emulators of the payment providers' HTTP APIs, for tests and the demo.

No machine here reaches WeChat Pay or Alipay, so each provider's API is emulated as stripe-mock
does for Stripe: the real request and response formats, real signatures and encryption with
locally generated keys, daily bills, and callbacks that can be delayed, duplicated, reordered
or dropped (:mod:`shanju.payments.emulators.outbox`). The production gateways
(``shanju.payments.wechatpay``, ``shanju.payments.alipay``) run unchanged against them: only the
base URL and the keys differ. Never used in production.
"""
