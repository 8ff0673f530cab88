"""Drives Debian's headless Chromium over the DevTools protocol against Strata's dashboard, as an
operator's browser would: loads the page, waits until it shows the node's listeners, and can
click a backend's Drain button, type the admin token, and take a screenshot.

usage: dashboard.py ADMIN_URL [--drain LAYER/LISTENER/BACKEND] [--token TOKEN]
                              [--sparkline-points N] [--screenshot FILE] [--text SELECTOR]

With --token, the first click is made without the token (the page must say it needs one and the
backend must stay up), then the token is typed into the page and the click made again.
Prints JSON lines (what the page showed, every URL the page requested) and `ok` last.
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Page:
    """One tab, spoken to over its DevTools websocket; events are kept as they arrive."""

    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, suppress_origin=True, timeout=30)
        self.next_id = 0
        self.requests = []

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == "Network.requestWillBeSent":
                self.requests.append(msg["params"]["request"]["url"])
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def until(self, expression, what, limit=20.0):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.1)
        body = self.eval("document.body ? document.body.innerText : ''")
        raise SystemExit(f"timed out waiting for {what}; the page shows:\n{body}")

    def click(self, selector):
        """A real mouse click at the middle of the element, as a user's."""
        box = self.until(
            f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
                 if (!el) return null; el.scrollIntoView({{block: "center"}});
                 const r = el.getBoundingClientRect();
                 return {{x: r.left + r.width / 2, y: r.top + r.height / 2}}; }})()""",
            f"the element {selector}",
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)


def start_browser(profile):
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking", "--disable-extensions",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--window-size=1280,1400", f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.exists(port_file):
            lines = open(port_file).read().split()
            if len(lines) >= 2:
                return proc, int(lines[0])
        if proc.poll() is not None:
            raise SystemExit(f"chromium exited with {proc.returncode}")
        time.sleep(0.05)
    raise SystemExit("chromium did not open its DevTools port")


def row_state(page, layer, listener, backend):
    return page.eval(
        f"""(() => {{ const card = document.querySelector('[data-listener={json.dumps(layer + ":" + listener)}]');
             const row = card && card.querySelector('tr[data-backend={json.dumps(backend)}]');
             if (!row) return null;
             return {{state: row.querySelector('.state').textContent,
                      button: row.querySelector('button').textContent}}; }})()""")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--drain")
    ap.add_argument("--token")
    ap.add_argument("--sparkline-points", type=int, default=0)
    ap.add_argument("--screenshot")
    ap.add_argument("--text", help="print the text the element SELECTOR shows")
    args = ap.parse_args()

    profile = tempfile.mkdtemp(prefix="strata-chromium-")
    proc, port = start_browser(profile)
    try:
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = Page(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
        page.call("Network.enable")
        page.call("Page.enable")
        # a request the page's Content-Security-Policy blocks is never sent, so the network log
        # can't show it: count the violations in the page itself
        page.call("Page.addScriptToEvaluateOnNewDocument", source="""
            window.__cspViolations = [];
            document.addEventListener('securitypolicyviolation',
                e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));""")
        page.call("Page.navigate", url=args.url)
        page.until("document.querySelectorAll('section .card').length > 0", "the listeners")

        if args.sparkline_points:
            # every graph drawn from at least N points of live traffic
            page.until(
                f"""(() => {{ const lines = [...document.querySelectorAll('.spark.rate polyline')];
                     return lines.length > 0 && lines.every(l => l.points.numberOfItems >= {args.sparkline_points}); }})()""",
                f"sparklines of {args.sparkline_points} points", limit=60)
            print(json.dumps({"sparklines": page.eval("document.querySelectorAll('.spark polyline').length")}))

        if args.drain:
            layer, listener, backend = args.drain.split("/", 2)
            button = (f'button[data-layer="{layer}"][data-listener="{listener}"]'
                      f'[data-backend="{backend}"][data-action="drain"]')
            print(json.dumps({"before": row_state(page, layer, listener, backend)}))
            if args.token:
                page.click(button)
                notice = page.until(
                    "(() => { const n = document.getElementById('notice'); return n.hidden ? null : n.textContent; })()",
                    "the page to say why the click was refused")
                print(json.dumps({"without_token": notice, "row": row_state(page, layer, listener, backend)}))
                page.click("#token")
                page.call("Input.insertText", text=args.token)
                page.eval("document.getElementById('token').dispatchEvent(new Event('change'))")
            page.click(button)
            page.until(
                f"(() => {{ const s = {json.dumps([layer, listener, backend])}; "
                f"const card = document.querySelector(`[data-listener=\"${{s[0]}}:${{s[1]}}\"]`); "
                f"const row = card && card.querySelector(`tr[data-backend=\"${{s[2]}}\"]`); "
                f"return row && row.querySelector('.state').textContent === 'draining'; }})()",
                "the page to show the backend draining")
            print(json.dumps({"after": row_state(page, layer, listener, backend),
                              "notice": page.eval("document.getElementById('notice').textContent")}))

        if args.text:
            text = page.until(
                f"(() => {{ const el = document.querySelector({json.dumps(args.text)}); return el && el.innerText; }})()",
                f"the element {args.text}")
            print(json.dumps({"text": text}))

        if args.screenshot:
            size = page.call("Page.getLayoutMetrics")["cssContentSize"]
            shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                             clip={"x": 0, "y": 0, "width": 1280, "height": min(size["height"], 4000), "scale": 1})
            with open(args.screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            print(json.dumps({"screenshot": args.screenshot, "height": size["height"]}))

        # wait for one more refresh, so that its requests are seen too
        seen = sum("/history" in u for u in page.requests)
        deadline = time.monotonic() + 10
        while sum("/history" in u for u in page.requests) <= seen and time.monotonic() < deadline:
            page.eval("1")
            time.sleep(0.1)
        print(json.dumps({"requests": page.requests,
                          "csp_violations": page.eval("window.__cspViolations")}))
        print("ok")
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
