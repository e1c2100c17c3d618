//! A public status page in Chromium: no console error (so nothing broke the CSP), a
//! day's figures and incidents on keyboard focus, both colour schemes, a 360 px phone
//! showing 30 days; screenshots `status-light`, `status-dark`, `status-phone` and
//! `status-bars-outage-day` under `target/screenshots/`.

use super::*;

#[tokio::test]
async fn chromium_shows_a_status_page_with_its_bars_in_both_schemes_and_on_a_phone() {
    let (app, _, _) = crate::status_pages::shop().await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/status/shop", app.address)).await;
    browser
        .wait_for(
            Duration::from_secs(10),
            "the page with its components",
            "document.querySelectorAll('article.component').length === 3",
        )
        .await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    let banner = browser
        .eval("document.querySelector('.banner h2').textContent")
        .await;
    assert!(
        banner
            .as_str()
            .is_some_and(|b| b.contains("Partial outage")),
        "{banner}"
    );
    let light = browser.screenshot("status-light").await;

    // The whole day down 40 days ago, by keyboard: its tip shows its figure.
    let outage_day = "document.querySelectorAll('article.component')[0]\
                      .querySelectorAll('.days li')[49]";
    let tip_shown = format!(
        "(() => {{ const li = {outage_day}; li.focus(); li.scrollIntoView({{block: 'center'}}); \
         const tip = li.querySelector('.tip'); \
         return document.activeElement === li && tip.getBoundingClientRect().height > 10 \
         && tip.textContent.includes('0.00% up'); }})()"
    );
    browser
        .wait_for(Duration::from_secs(5), "the tip on focus", &tip_shown)
        .await;
    let hidden = browser
        .eval(
            "document.querySelectorAll('article.component')[0]\
             .querySelectorAll('.days li')[48].querySelector('.tip').getBoundingClientRect().height",
        )
        .await;
    assert!(
        hidden.as_f64().is_some_and(|h| h <= 1.0),
        "tips of other days stay hidden: {hidden}"
    );
    let bars = browser.screenshot("status-bars-outage-day").await;

    browser.go_dark().await;
    browser
        .eval("(() => { document.activeElement.blur(); window.scrollTo(0, 0); return true; })()")
        .await;
    let dark = browser.screenshot("status-dark").await;

    browser.fits_a_phone().await;
    let shown_days = browser
        .eval(
            "[...document.querySelectorAll('article.component')[0].querySelectorAll('.days li')]\
             .filter(li => li.getBoundingClientRect().width > 0).length",
        )
        .await;
    assert_eq!(shown_days, 30, "a phone shows the last 30 days");
    browser
        .eval("document.querySelector('article.component').scrollIntoView({block: 'center'})")
        .await;
    let phone = browser.screenshot("status-phone").await;
    eprintln!(
        "screenshots: {}, {}, {}, {}",
        light.display(),
        bars.display(),
        dark.display(),
        phone.display()
    );
}
