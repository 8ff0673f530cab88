use super::*;

const TOKEN: &str = "0123456789abcdef0123";

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9900))
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    h
}

fn check(pairs: &[(&str, &str)]) -> Result<(), Refusal> {
    allow(&headers(pairs), None, loopback())
}

fn check_with_token(pairs: &[(&str, &str)]) -> Result<(), Refusal> {
    allow(&headers(pairs), Some(TOKEN), loopback())
}

#[test]
fn a_page_elsewhere_cannot_post_through_the_browser() {
    let csrf = [("origin", "http://evil.example"), ("host", "evil.example")];
    assert_eq!(
        check(&csrf),
        Err(Refusal::ForeignHost("evil.example".into()))
    );
    let csrf = [
        ("origin", "http://evil.example"),
        ("host", "127.0.0.1:9900"),
    ];
    assert_eq!(
        check(&csrf),
        Err(Refusal::CrossSite("http://evil.example".into()))
    );
    for site in ["cross-site", "same-site"] {
        let r = check(&[("sec-fetch-site", site), ("host", "127.0.0.1:9900")]);
        assert_eq!(r.map_err(|e| e.reason()), Err("cross_site"), "{site}");
    }
    // another port on the same machine is another origin
    let r = check(&[
        ("origin", "http://127.0.0.1:3000"),
        ("host", "127.0.0.1:9900"),
    ]);
    assert!(r.is_err());
    for origin in ["null", "https://127.0.0.1:9900", "http://localhost:9900"] {
        let r = check(&[("origin", origin), ("host", "127.0.0.1:9900")]);
        assert_eq!(r, Err(Refusal::CrossSite(origin.into())), "{origin}");
    }
    // an Origin with no Host to compare it with
    assert!(check(&[("origin", "http://127.0.0.1:9900")]).is_err());
}

#[test]
fn same_origin_and_tools_without_origin_pass() {
    assert_eq!(check(&[]), Ok(()));
    assert_eq!(check(&[("host", "127.0.0.1:9900")]), Ok(()));
    let same = [
        ("host", "LOCALHOST:9900"),
        ("origin", "http://localhost:9900"),
        ("sec-fetch-site", "same-origin"),
    ];
    assert_eq!(check(&same), Ok(()));
    assert_eq!(
        check(&[("host", "127.0.0.1"), ("origin", "http://127.0.0.1:80")]),
        Ok(())
    );
    assert_eq!(
        check(&[("host", "[::1]:9900"), ("sec-fetch-site", "none")]),
        Ok(())
    );
}

#[test]
fn without_a_token_the_host_must_be_an_address_or_localhost() {
    for host in [
        "127.0.0.1",
        "127.0.0.1:9900",
        "10.1.2.3:80",
        "[::1]",
        "[::1]:9900",
        "localhost",
        "Localhost:1",
    ] {
        assert_eq!(check(&[("host", host)]), Ok(()), "{host}");
    }
    for host in [
        "evil.example",
        "admin",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "::1",
        "[::1",
        "127.0.0.1:port",
        "",
    ] {
        assert_eq!(
            check(&[("host", host)]),
            Err(Refusal::ForeignHost(host.into())),
            "{host}"
        );
    }
    let twice = [("host", "127.0.0.1"), ("host", "evil.example")];
    assert_eq!(check(&twice), Err(Refusal::Repeated("host".into())));
}

#[test]
fn without_a_token_only_a_loopback_listener_takes_changes() {
    let h = headers(&[("host", "10.0.0.5:9900")]);
    let reachable = SocketAddr::from(([0, 0, 0, 0], 9900));
    assert_eq!(allow(&h, None, reachable), Err(Refusal::NotLoopback));
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:9900".parse().unwrap();
    assert_eq!(allow(&h, None, mapped), Ok(()));
    let auth = format!("Bearer {TOKEN}");
    let with_token = headers(&[("host", "10.0.0.5:9900"), ("authorization", &auth)]);
    assert_eq!(allow(&with_token, Some(TOKEN), reachable), Ok(()));
}

#[test]
fn with_a_token_it_must_be_presented_whatever_the_host() {
    assert_eq!(
        check_with_token(&[("host", "127.0.0.1")]),
        Err(Refusal::NoToken)
    );
    let basic = [("authorization", "Basic dXNlcjpwYXNz")];
    assert_eq!(check_with_token(&basic), Err(Refusal::NoToken));
    assert_eq!(
        check_with_token(&[("authorization", "Bearer ")]),
        Err(Refusal::NoToken)
    );
    let short = &TOKEN[..TOKEN.len() - 1];
    let long = format!("{TOKEN}0");
    for wrong in ["wrong-token-wrong-token", short, &long] {
        let auth = format!("Bearer {wrong}");
        assert_eq!(
            check_with_token(&[("authorization", &auth)]),
            Err(Refusal::WrongToken),
            "{wrong}"
        );
    }
    let auth = format!("bearer  {TOKEN}");
    assert_eq!(
        check_with_token(&[("authorization", &auth), ("host", "admin.internal:9900")]),
        Ok(())
    );
    // still no cross-site requests, token or not
    let csrf = [
        ("authorization", auth.as_str()),
        ("origin", "http://evil.example"),
        ("host", "127.0.0.1:9900"),
    ];
    assert_eq!(
        check_with_token(&csrf),
        Err(Refusal::CrossSite("http://evil.example".into()))
    );
    // a rebound name looks same-origin to the browser: there, the token is what stops the page
    let rebound = [("origin", "http://evil.example"), ("host", "evil.example")];
    assert_eq!(check_with_token(&rebound), Err(Refusal::NoToken));
}

#[test]
fn refusals_say_401_with_a_challenge_or_403() {
    assert_eq!(Refusal::NoToken.status(), StatusCode::UNAUTHORIZED);
    assert!(Refusal::WrongToken
        .challenge()
        .unwrap()
        .starts_with("Bearer "));
    assert_eq!(Refusal::NotLoopback.status(), StatusCode::FORBIDDEN);
    assert_eq!(Refusal::NotLoopback.challenge(), None);
}

#[test]
fn secrets_compare_whole() {
    assert!(same_secret(b"abcdef", b"abcdef"));
    assert!(!same_secret(b"abcdef", b"abcde"));
    assert!(!same_secret(b"abcdef", b"abcdefabcdef"));
    assert!(!same_secret(b"abcdef", b""));
    assert!(!same_secret(b"", b""));
}

#[test]
fn without_a_token_a_rebound_name_cannot_read_either() {
    let rebound = headers(&[("host", "rebind.evil.example:9900")]);
    assert_eq!(
        allow_read(&rebound, None),
        Err(Refusal::ForeignHost("rebind.evil.example:9900".into()))
    );
    assert_eq!(
        allow_read(&headers(&[("host", "127.0.0.1:9900")]), None),
        Ok(())
    );
    assert_eq!(allow_read(&headers(&[]), None), Ok(()));
    // with a token, reads stay open to names (operators reach the listener by DNS name)
    assert_eq!(allow_read(&rebound, Some(TOKEN)), Ok(()));
}
