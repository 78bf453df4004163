"""How long an artifact's visualization takes to appear in the ZenML dashboard (a command, not a test).

Logs in to the local dashboard in headless Chromium, opens the run's graph (a tall window, so that every node is
drawn), clicks the artifact's node, opens its Visualization tab, clicks "Load Preview" (the dashboard asks before it
shows HTML) and waits until ``--text`` shows inside the frame the dashboard draws the artifact in. Prints the seconds
from that click to the text, and saves a screenshot.

Usage: python scripts/time_zenml_visualization.py RUN_ID ARTIFACT --text "Share of drifted columns"
       [--server http://127.0.0.1:8237] [--out shot.png] [--timeout 120]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshot_page import chromium, zenml_login  # noqa: E402


def frame_text(driver) -> str:
    """The text of every frame on the page (the dashboard draws an HTML visualization in an iframe)."""
    from selenium.webdriver.common.by import By

    texts = []
    for frame in driver.find_elements(By.TAG_NAME, "iframe"):
        driver.switch_to.frame(frame)
        texts.append(driver.find_element(By.TAG_NAME, "body").text)
        driver.switch_to.default_content()
    return "\n".join(texts)


def _step(driver, loaded: float | None) -> float | None:
    """Opens the Visualization tab and clicks "Load Preview" once; returns when that click happened."""
    from selenium.webdriver.common.by import By

    tab = [t for t in driver.find_elements(By.CSS_SELECTOR, "[role=tab]") if t.text == "Visualization"]
    if tab and tab[-1].get_attribute("aria-selected") != "true":
        driver.execute_script("arguments[0].click()", tab[-1])
    button = [b for b in driver.find_elements(By.TAG_NAME, "button") if b.text == "Load Preview"]
    if button and loaded is None:  # the dashboard asks before it shows an HTML visualization
        driver.execute_script("arguments[0].click()", button[0])
        return time.perf_counter()
    return loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_id")
    parser.add_argument("artifact")
    parser.add_argument("--text", required=True)
    parser.add_argument("--server", default="http://127.0.0.1:8237")
    parser.add_argument("--out", type=Path, default=Path("visualization.png"))
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    driver = chromium("1600x9000")
    try:
        zenml_login(driver, args.server)
        driver.get(f"{args.server}/projects/default/runs/{args.run_id}")
        time.sleep(6)
        node = next(n for n in driver.find_elements(By.CSS_SELECTOR, ".react-flow__node")
                    if n.text.split("\n")[0] == args.artifact)
        start = time.perf_counter()
        driver.execute_script("arguments[0].click()", node.find_element(By.XPATH, f".//*[text()='{args.artifact}']"))
        seconds, loaded = None, None
        while time.perf_counter() - start < args.timeout:
            try:
                loaded = _step(driver, loaded)
                if loaded is not None and args.text in frame_text(driver):
                    seconds = time.perf_counter() - loaded
                    break
            except StaleElementReferenceException:  # the sheet re-rendered under us: look again
                pass
            time.sleep(0.1)
        driver.set_window_size(1600, 1200)
        driver.save_screenshot(str(args.out))
        print(f"{args.artifact}: " + (f"'{args.text}' visible {seconds:.2f} s after 'Load Preview' (the node clicked "
                                      f"{loaded - start:.2f} s before)" if seconds is not None
                                      else f"'{args.text}' not visible after {args.timeout:.0f} s"))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
