//! How a URL that may carry a credential is shown anywhere outside the request that
//! needs it (pages, API answers, notification bodies, incidents, logs): its userinfo
//! as `***@`, and the values of query parameters whose names say secret as `***`.
//! A notification receiver's URL is a credential as a whole (a Slack webhook's path is
//! its key), so it is shown as its scheme and host only.

use url::Url;

/// Query parameters whose values are credentials (compared without case).
pub const SECRET_PARAMS: [&str; 10] = [
    "token",
    "key",
    "secret",
    "password",
    "sig",
    "signature",
    "auth",
    "access_token",
    "api_key",
    "apikey",
];

/// What stands for a hidden value.
pub const MASK: &str = "***";

/// `url` with its userinfo and secret query values masked.
pub fn url(url: &Url) -> String {
    let mut shown = url.clone();
    if !url.username().is_empty() || url.password().is_some() {
        // Setting these fails only for URLs that cannot have userinfo (no host),
        // which have none to hide.
        let _ = shown.set_password(None);
        let _ = shown.set_username(MASK);
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let secret = SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s));
                let value = if secret {
                    MASK.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), value)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

/// `url` as its scheme, host and port: enough to say where it points.
pub fn origin(url: &Url) -> String {
    match url.host_str() {
        Some(host) => match url.port() {
            Some(port) => format!("{}://{host}:{port}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        },
        None => format!("{}:", url.scheme()),
    }
}

/// `text` as written by a person, that may not even parse as a URL, with anything
/// between `://` and an `@` masked and secret query values masked: for messages
/// that quote a value of the targets file.
pub fn text(text: &str) -> String {
    if let Ok(parsed) = Url::parse(text) {
        return url(&parsed);
    }
    let mut shown = text.to_owned();
    if let Some(start) = shown.find("://").map(|i| i + 3) {
        let authority_end = shown[start..]
            .find(['/', '?', '#'])
            .map_or(shown.len(), |i| start + i);
        if let Some(at) = shown[start..authority_end].rfind('@') {
            shown.replace_range(start..start + at, MASK);
        }
    }
    if let Some(query) = shown.find('?') {
        let (head, tail) = shown.split_at(query + 1);
        let (params, fragment) = tail.split_at(tail.find('#').unwrap_or(tail.len()));
        let params: Vec<String> = params
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s)) => {
                    format!("{k}={MASK}")
                }
                _ => pair.to_owned(),
            })
            .collect();
        shown = format!("{head}{}{fragment}", params.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(raw: &str) -> String {
        url(&Url::parse(raw).expect("url"))
    }

    #[test]
    fn userinfo_and_secret_query_values_are_masked() {
        assert_eq!(
            shown("http://admin:hunter2pass@host:8080/x?token=tok3n&page=2&Signature=abc"),
            "http://***@host:8080/x?token=***&page=2&Signature=***"
        );
        assert_eq!(shown("https://user@host/"), "https://***@host/");
        assert_eq!(
            shown("https://host/health?verbose=1"),
            "https://host/health?verbose=1"
        );
    }

    #[test]
    fn a_receiver_is_shown_by_its_origin() {
        let hook = Url::parse("https://hooks.slack.com/services/T0/B0/s3cr3t").expect("url");
        assert_eq!(origin(&hook), "https://hooks.slack.com");
        let local = Url::parse("http://127.0.0.1:9000/hook?key=k").expect("url");
        assert_eq!(origin(&local), "http://127.0.0.1:9000");
    }

    #[test]
    fn text_that_is_no_url_is_masked_too() {
        assert_eq!(
            text("http://admin:pa ss@host:99999/x?access_token=t0k#frag"),
            "http://***@host:99999/x?access_token=***#frag"
        );
        assert_eq!(text("not a url"), "not a url");
    }
}
