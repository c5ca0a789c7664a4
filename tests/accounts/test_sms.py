"""Alibaba Cloud SMS: mainland numbers, the V3 signature (Alibaba Cloud's published example),
and the production sender talking to the emulator over HTTP, refusals included."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import requests

from shanju.accounts import sms
from shanju.accounts.sms_emulator import AliyunSmsEmulator, create_app, setup
from shanju.core.clock import utcnow
from shanju.core.errors import InvalidInput
from tests.serving import free_socket, uvicorn_thread


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.mark.parametrize("typed", ["13800138000", "+86 138 0013 8000", "8613800138000",
                                   "0086-138-0013-8000", "(+86)13800138000"])
def test_mainland_numbers_are_kept_in_e164(typed: str) -> None:
    assert sms.check_phone(typed) == "+8613800138000"
    assert sms.mask_phone(sms.check_phone(typed)) == "138****8000"


@pytest.mark.parametrize("typed", ["", "1380013800", "138001380001", "12800138000",
                                   "23800138000", "+85261234567", "+1 415 555 0100",
                                   "１３８００１３８０００", "010-12345678", "138OO138000"])
def test_other_numbers_are_refused(typed: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        sms.check_phone(typed)
    assert refused.value.code == "invalid_phone" and refused.value.field == "phone"


def test_the_v3_signature_matches_alibaba_clouds_published_example() -> None:
    # The worked example of Alibaba Cloud's "V3 request structure and signature" document
    # (RunInstances on ECS, fixed key, date and nonce): a fixed input, not a calendar date.
    headers = {
        "host": "ecs.cn-shanghai.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-version": "2014-05-26",
        "x-acs-date": "2023-10-26T10:22:32Z",
        "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
        "x-acs-content-sha256": sms.EMPTY_SHA256,
    }
    query = sms.canonical_query({"RegionId": "cn-shanghai",
                                 "ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"})
    request, signed = sms.canonical_request(method="POST", path="/", query=query,
                                            headers=headers, payload_sha256=sms.EMPTY_SHA256)
    import hashlib

    assert hashlib.sha256(request.encode()).hexdigest() == (
        "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259")
    assert sms.authorization(key_id="YourAccessKeyId", secret="YourAccessKeySecret",
                             method="POST", path="/", query=query, headers=headers,
                             payload_sha256=sms.EMPTY_SHA256) == (
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;"
        "x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"
        "Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0")
    assert signed == ("host;x-acs-action;x-acs-content-sha256;x-acs-date;"
                      "x-acs-signature-nonce;x-acs-version")
    assert sms.percent_encode(" a*b~中") == "%20a%2Ab~%E4%B8%AD"


@pytest.fixture
def world() -> Iterator[tuple[AliyunSmsEmulator, sms.AliyunSmsConfig, Clock]]:
    """The emulator served by uvicorn under a prefix (as the demo mounts it), its clock."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    clock = Clock()
    sock = free_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/emulators/aliyun-sms"
    emulator, config = setup(url, clock=clock)
    outer = Starlette(routes=[Mount("/emulators/aliyun-sms", create_app(emulator))])
    with uvicorn_thread(outer, sock):
        yield emulator, config, clock


def test_the_sender_delivers_a_code_to_the_emulator(world) -> None:  # type: ignore[no-untyped-def]
    emulator, config, clock = world
    sender = sms.AliyunSmsSender(config, clock=clock)
    sender.send_code(phone="+8613800138000", code="042917")
    [received] = emulator.messages
    assert received.phone == "13800138000" and received.code == "042917"
    assert received.text == "【善举】您的验证码为042917，5分钟内有效。如非本人操作，请忽略本短信。"
    assert emulator.latest_code("+8613800138000") == "042917"
    # Alibaba Cloud's flow control: one code a minute to a number, five an hour.
    with pytest.raises(sms.SmsError) as limited:
        sender.send_code(phone="+8613800138000", code="111111")
    assert limited.value.code == "isv.BUSINESS_LIMIT_CONTROL"
    for _ in range(4):
        clock.now += dt.timedelta(minutes=1, seconds=1)
        sender.send_code(phone="+8613800138000", code="222222")
    clock.now += dt.timedelta(minutes=1, seconds=1)
    with pytest.raises(sms.SmsError, match="BUSINESS_LIMIT_CONTROL"):
        sender.send_code(phone="+8613800138000", code="333333")
    # The inbox shows the codes, newest first.
    page = requests.get(config.endpoint + "/emulator/inbox", timeout=5).text
    assert page.index('data-sms-code="222222"') < page.index('data-sms-code="042917"')


def test_the_emulator_refuses_what_alibaba_cloud_refuses(world) -> None:  # type: ignore[no-untyped-def]
    emulator, config, clock = world

    def call(sender: sms.AliyunSmsSender, **params: str) -> None:
        sender.send_code(phone=params.get("phone", "+8613900139000"), code="123456")

    bad_secret = sms.AliyunSmsConfig(config.access_key_id, "not-the-secret", config.sign_name,
                                     config.template_code, config.endpoint)
    with pytest.raises(sms.SmsError) as refused:
        call(sms.AliyunSmsSender(bad_secret, clock=clock))
    assert refused.value.code == "SignatureDoesNotMatch"
    unknown = sms.AliyunSmsConfig("LTAIunknown", "x", config.sign_name, config.template_code,
                                  config.endpoint)
    with pytest.raises(sms.SmsError, match="InvalidAccessKeyId.NotFound"):
        call(sms.AliyunSmsSender(unknown, clock=clock))
    with pytest.raises(sms.SmsError, match="InvalidTimeStamp.Expired"):
        call(sms.AliyunSmsSender(config, clock=lambda: clock.now - dt.timedelta(minutes=16)))
    other_sign = sms.AliyunSmsConfig(config.access_key_id, config.access_key_secret, "别的签名",
                                     config.template_code, config.endpoint)
    with pytest.raises(sms.SmsError, match="isv.SMS_SIGNATURE_ILLEGAL"):
        call(sms.AliyunSmsSender(other_sign, clock=clock))
    other_template = sms.AliyunSmsConfig(config.access_key_id, config.access_key_secret,
                                         config.sign_name, "SMS_999", config.endpoint)
    with pytest.raises(sms.SmsError, match="isv.SMS_TEMPLATE_ILLEGAL"):
        call(sms.AliyunSmsSender(other_template, clock=clock))
    # A request replayed with the same nonce is refused.
    sender = sms.AliyunSmsSender(config, clock=clock)
    url, headers = sender.signed_request({"PhoneNumbers": "13700137000",
                                          "SignName": config.sign_name,
                                          "TemplateCode": config.template_code,
                                          "TemplateParam": '{"code":"1"}'}, nonce="n-1")
    first = requests.post(url, data=b"", headers=headers, timeout=5)
    assert first.status_code == 200 and first.json()["Code"] == "OK"
    replayed = requests.post(url, data=b"", headers=headers, timeout=5)
    assert replayed.status_code == 400 and replayed.json()["Code"] == "SignatureNonceUsed"
    # A tampered parameter breaks the signature.
    url, headers = sender.signed_request({"PhoneNumbers": "13700137001",
                                          "SignName": config.sign_name,
                                          "TemplateCode": config.template_code,
                                          "TemplateParam": '{"code":"1"}'})
    tampered = requests.post(url.replace("13700137001", "13700137002"), data=b"",
                             headers=headers, timeout=5)
    assert tampered.status_code == 400 and tampered.json()["Code"] == "SignatureDoesNotMatch"
    assert [m.phone for m in emulator.messages] == ["13700137000"]
