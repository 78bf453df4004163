"""A page as headless Chromium shows it, saved as a PNG (a command, not a test): how docs/img's screenshots were made.

Optionally logs in to the ZenML dashboard first (``--zenml-login``), uploads a file into the page's first file input
(``--upload``, the demo page), and waits until ``--wait-text`` appears before the shot. Prints the page's visible text
(what a reader of the screenshot sees) to stdout.

Usage: python scripts/screenshot_page.py URL OUT.png [--upload FILE] [--wait-text TEXT] [--zenml-login] [--js SCRIPT]
       [--size 1400x1600]
docs/img/zenml_run_dag.png: the run page with --zenml-login --size 2600x1500 --settle 6 and a --js that closes the
"Run Insights" panel and clicks the graph's fit-view button; zenml_run_metadata.png: --js clicking the "Metadata" tab.
Needs Chromium and its driver (apt-get install chromium chromium-driver) and selenium (the dev extra).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

# The local ZenML server asks a new user for account details and a use case before any page (its "survey"):
# filled here through the page's own inputs (React listens to input events, so values are set with them).
_FILL = """
const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
for (const [name, value] of [['fullName', 'fer'], ['email', 'fer@example.com']]) {
  const e = document.querySelector(`input[name=${name}]`);
  if (e) { setter.call(e, value); e.dispatchEvent(new Event('input', {bubbles: true})); }
}
for (const t of ['ML Engineer', 'My Laptop']) {
  const e = Array.from(document.querySelectorAll('button,label,[role=radio]')).find(x => x.innerText.trim().startsWith(t));
  if (e) e.click();
}
const next = Array.from(document.querySelectorAll('button')).find(b => /Continue|Skip|Finish|Next/.test(b.innerText));
if (next) next.click();
"""


def skip_zenml_survey(driver, pages: int = 6) -> None:
    """Answers the ZenML dashboard's first-login survey (a page at a time) until it lets the user through."""
    for _ in range(pages):
        if "/survey" not in driver.current_url:
            return
        driver.execute_script(_FILL)
        time.sleep(3)


def chromium(size: str = "1400x1600"):
    """A headless Chromium driven by selenium (Debian's chromium and chromium-driver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={size.replace('x', ',')}"):
        options.add_argument(arg)
    options.page_load_strategy = "eager"  # the dashboards keep connections open; "normal" can wait for ever
    if shutil.which("chromium"):  # Debian's package; selenium would otherwise try to download a Chrome
        options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(60)
    return driver


def zenml_login(driver, base: str, settle: float = 3.0) -> None:
    """Logs in to the local ZenML dashboard at ``base`` as its ``default`` user (no password) and skips its survey."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/")
    time.sleep(settle)
    if "/login" in driver.current_url:
        wait = WebDriverWait(driver, 90)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input"))
        driver.find_element(By.CSS_SELECTOR, "input").send_keys("default")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: "/login" not in d.current_url)
    skip_zenml_survey(driver)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--upload", type=Path)
    parser.add_argument("--wait-text", default="")
    parser.add_argument("--zenml-login", action="store_true", help="log in as ZenML's local 'default' user first")
    parser.add_argument("--js", default="", help="JavaScript run on the page before the shot (open a tab, fit a graph)")
    parser.add_argument("--size", default="1400x1600")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait for late rendering")
    args = parser.parse_args()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium(args.size)
    try:
        wait = WebDriverWait(driver, 90)
        if args.zenml_login:
            zenml_login(driver, "/".join(args.url.split("/")[:3]), args.settle)
        driver.get(args.url)
        if args.upload:
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=file]"))
            driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(args.upload.resolve()))
        if args.wait_text:
            wait.until(lambda d: args.wait_text in d.find_element(By.TAG_NAME, "body").text)
        time.sleep(args.settle)
        if args.js:
            driver.execute_script(args.js)
            time.sleep(args.settle)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        print(driver.execute_script("return document.body.innerText"))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
