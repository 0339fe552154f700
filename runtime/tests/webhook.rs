//! `verify-webhook` through the real edge, agent and upstream: signatures computed in the test
//! from each provider's documented scheme; verified webhooks reach the upstream with their body
//! unchanged, failed ones get 403 `ERR_NGROK_3204` and never reach it; `enforce: false` records
//! the outcome and forwards.

// Test code: failures should be loud.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http::StatusCode;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};

mod support;
use support::*;

/// One HTTP/1.1 POST to the edge's HTTP listener.
async fn post(
    edge: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    http1(
        edge,
        "POST",
        host,
        path,
        headers,
        Bytes::copy_from_slice(body),
    )
    .await
}

// ------------------------------------------------------------------ signing, per the providers' docs

fn mac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn mac1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn policy(provider: &str, secret: &str, enforce: bool) -> String {
    format!(
        r#"on_http_request:
  - actions:
      - type: verify-webhook
        config:
          provider: {provider}
          secret: "{secret}"
          enforce: {enforce}
      - type: add-headers
        config:
          headers:
            x-verified: "${{actions.ngrok.verify_webhook.verified}}"
"#
    )
}

const GITHUB: &str = "gh-secret";
const STRIPE: &str = "whsec_stripe_test";
const SLACK: &str = "slack-signing-secret";
const TWILIO: &str = "twilio-auth-token";
const SHOPIFY: &str = "shopify-secret";
const GITLAB: &str = "gitlab-token";
const GENERIC: &str = "generic-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_verified_at_the_edge() {
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let sendgrid = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    // The verification key SendGrid shows: the base64 DER SubjectPublicKeyInfo.
    let mut spki = b"\x30\x59\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07\x03\x42\x00".to_vec();
    spki.extend_from_slice(sendgrid.public_key().as_ref());
    let sendgrid_key = b64(&spki);

    let (up, hits) = echo_upstream("x-verified").await;
    let stack = policy_stack(
        up,
        &[
            ("github", policy("github", GITHUB, true)),
            ("stripe", policy("stripe", STRIPE, true)),
            ("slack", policy("slack", SLACK, true)),
            ("twilio", policy("twilio", TWILIO, true)),
            ("shopify", policy("shopify", SHOPIFY, true)),
            ("gitlab", policy("gitlab", GITLAB, true)),
            ("sendgrid", policy("sendgrid", &sendgrid_key, true)),
            ("generic", policy("generic_hmac_sha256", GENERIC, true)),
            ("audit", policy("github", GITHUB, false)),
        ],
    )
    .await;
    let http = stack.http();
    let body: &[u8] = br#"{"action":"opened","number":1}"#;
    let tampered: &[u8] = br#"{"action":"closed","number":1}"#;
    let ts = now().to_string();
    let stale = (now() - 3600).to_string();

    let github = format!("sha256={}", hex::encode(mac256(GITHUB.as_bytes(), body)));
    let stripe = |t: &str| {
        format!(
            "t={t},v1={}",
            hex::encode(mac256(
                STRIPE.as_bytes(),
                format!("{t}.{}", String::from_utf8_lossy(body)).as_bytes()
            ))
        )
    };
    let slack = |t: &str| {
        format!(
            "v0={}",
            hex::encode(mac256(
                SLACK.as_bytes(),
                format!("v0:{t}:{}", String::from_utf8_lossy(body)).as_bytes()
            ))
        )
    };
    // Twilio: the URL it called, then each POST parameter name and value, sorted by name.
    let form: &[u8] = b"To=%2B15005550006&Body=hello+world&From=%2B15005550001";
    let twilio = b64(&mac1(
        TWILIO.as_bytes(),
        b"http://twilio.example.test/sms?x=1Bodyhello worldFrom+15005550001To+15005550006",
    ));
    let shopify = b64(&mac256(SHOPIFY.as_bytes(), body));
    let sendgrid_sig = |t: &str| {
        let mut msg = t.as_bytes().to_vec();
        msg.extend_from_slice(body);
        b64(sendgrid.sign(&rng, &msg).unwrap().as_ref())
    };
    let generic = |t: &str| {
        hex::encode(mac256(
            GENERIC.as_bytes(),
            format!("{t}.{}", String::from_utf8_lossy(body)).as_bytes(),
        ))
    };
    let (sg_ok, sg_stale) = (sendgrid_sig(&ts), sendgrid_sig(&stale));
    let (stripe_ok, stripe_stale) = (stripe(&ts), stripe(&stale));
    let (slack_ok, slack_stale) = (slack(&ts), slack(&stale));
    let (generic_ok, generic_stale) = (generic(&ts), generic(&stale));
    let form_ct = ("content-type", "application/x-www-form-urlencoded");

    // (endpoint, path, headers, body, expected status)
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        &'a [u8],
        StatusCode,
    );
    let ok = StatusCode::OK;
    let no = StatusCode::FORBIDDEN;
    let cases: Vec<Case<'_>> = vec![
        (
            "github",
            "/",
            vec![("x-hub-signature-256", &github)],
            body,
            ok,
        ),
        (
            "github",
            "/",
            vec![("x-hub-signature-256", &github)],
            tampered,
            no,
        ),
        ("github", "/", vec![], body, no),
        (
            "stripe",
            "/",
            vec![("stripe-signature", &stripe_ok)],
            body,
            ok,
        ),
        (
            "stripe",
            "/",
            vec![("stripe-signature", &stripe_ok)],
            tampered,
            no,
        ),
        (
            "stripe",
            "/",
            vec![("stripe-signature", &stripe_stale)],
            body,
            no,
        ),
        (
            "slack",
            "/",
            vec![
                ("x-slack-signature", &slack_ok),
                ("x-slack-request-timestamp", &ts),
            ],
            body,
            ok,
        ),
        (
            "slack",
            "/",
            vec![
                ("x-slack-signature", &slack_ok),
                ("x-slack-request-timestamp", &ts),
            ],
            tampered,
            no,
        ),
        (
            "slack",
            "/",
            vec![
                ("x-slack-signature", &slack_stale),
                ("x-slack-request-timestamp", &stale),
            ],
            body,
            no,
        ),
        (
            "twilio",
            "/sms?x=1",
            vec![("x-twilio-signature", &twilio), form_ct],
            form,
            ok,
        ),
        (
            "twilio",
            "/sms?x=1",
            vec![("x-twilio-signature", &twilio), form_ct],
            b"To=%2B15005550006&Body=bye&From=%2B15005550001",
            no,
        ),
        (
            "twilio",
            "/sms?x=2",
            vec![("x-twilio-signature", &twilio), form_ct],
            form,
            no,
        ),
        (
            "shopify",
            "/",
            vec![("x-shopify-hmac-sha256", &shopify)],
            body,
            ok,
        ),
        (
            "shopify",
            "/",
            vec![("x-shopify-hmac-sha256", &shopify)],
            tampered,
            no,
        ),
        ("gitlab", "/", vec![("x-gitlab-token", GITLAB)], body, ok),
        (
            "gitlab",
            "/",
            vec![("x-gitlab-token", "gitlab-tokem")],
            body,
            no,
        ),
        (
            "sendgrid",
            "/",
            vec![
                ("x-twilio-email-event-webhook-signature", &sg_ok),
                ("x-twilio-email-event-webhook-timestamp", &ts),
            ],
            body,
            ok,
        ),
        (
            "sendgrid",
            "/",
            vec![
                ("x-twilio-email-event-webhook-signature", &sg_ok),
                ("x-twilio-email-event-webhook-timestamp", &ts),
            ],
            tampered,
            no,
        ),
        (
            "sendgrid",
            "/",
            vec![
                ("x-twilio-email-event-webhook-signature", &sg_stale),
                ("x-twilio-email-event-webhook-timestamp", &stale),
            ],
            body,
            no,
        ),
        (
            "generic",
            "/",
            vec![
                ("x-webhook-signature", &generic_ok),
                ("x-webhook-timestamp", &ts),
            ],
            body,
            ok,
        ),
        (
            "generic",
            "/",
            vec![
                ("x-webhook-signature", &generic_ok),
                ("x-webhook-timestamp", &ts),
            ],
            tampered,
            no,
        ),
        (
            "generic",
            "/",
            vec![
                ("x-webhook-signature", &generic_stale),
                ("x-webhook-timestamp", &stale),
            ],
            body,
            no,
        ),
    ];
    let mut forwarded = 0;
    for (i, (ep, path, headers, payload, want)) in cases.iter().enumerate() {
        let r = post(http, &format!("{ep}.example.test"), path, headers, payload).await;
        assert_eq!(r.status, *want, "case {i}: {ep} {headers:?}");
        if *want == StatusCode::OK {
            forwarded += 1;
            assert_eq!(
                &r.body[..],
                *payload,
                "case {i}: the upstream got the body unchanged"
            );
            assert_eq!(r.header("x-verified"), "true", "case {i}");
        } else {
            assert_eq!(r.header("wicket-error-code"), "ERR_NGROK_3204", "case {i}");
        }
        assert_eq!(
            hits.load(Ordering::SeqCst),
            forwarded,
            "case {i}: refused webhooks never reach the upstream"
        );
    }

    // enforce: false forwards a bad webhook with the outcome recorded.
    let r = post(
        http,
        "audit.example.test",
        "/",
        &[("x-hub-signature-256", &github)],
        tampered,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-verified"), "false");
    assert_eq!(&r.body[..], tampered);

    // A body over the limit is refused before verification.
    let big = vec![b'x'; 4 * 1024 * 1024 + 1];
    let r = post(
        http,
        "github.example.test",
        "/",
        &[("x-hub-signature-256", &github)],
        &big,
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(hits.load(Ordering::SeqCst), forwarded + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_provider_refuses_the_bind() {
    let (up, _) = echo_upstream("x-verified").await;
    let stack = Stack::builder()
        .policy_endpoint(
            "zoom",
            "http://zoom.example.test",
            format!("http://{up}"),
            policy("zoom", "s", true),
        )
        .allow_refused()
        .start()
        .await;
    let state = format!("{:?}", stack.status.endpoints.get("zoom"));
    assert!(
        state.contains("`zoom`") && state.contains("github"),
        "{state}"
    );
}
