// The website under test: a tiny HTTP server on a loopback port serving one
// HTML page that loads supertokens-web-js's own browser bundles (no bundler),
// at "/" and at "/auth/verify" (the magic link's landing page).
//
// The bundles are the webpack builds the package ships in bundle/, with
// content-hashed names. supertokensWebsite (website.<hash>.js) is the shared
// runtime the others depend on and must load first; each bundle declares one
// global: supertokens, supertokensSession, supertokensPasswordless.
//
// The page reads its configuration (otpd's origin and the token transfer
// method) from window.__otpdE2E, which the test installs in each browser
// context with context.addInitScript, so one page server serves every otpd
// and both modes, and a magic link opened in a fresh context still inits.
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
const bundleDir = join(dirname(require.resolve("supertokens-web-js/package.json")), "bundle");

// The bundles in load order: [URL name, file name prefix, global].
const BUNDLES = [
  ["website", "website", "supertokensWebsite"],
  ["supertokens", "supertokens", "supertokens"],
  ["session", "session", "supertokensSession"],
  ["passwordless", "passwordless", "supertokensPasswordless"],
];

export const API_BASE_PATH = "/st/auth";

function loadBundles() {
  const files = readdirSync(bundleDir);
  const out = new Map();
  for (const [name, prefix, global] of BUNDLES) {
    const matches = files.filter((f) => f.startsWith(`${prefix}.`) && f.endsWith(".js"));
    if (matches.length !== 1) {
      throw new Error(`expected one ${prefix}.<hash>.js in ${bundleDir}, found ${JSON.stringify(matches)}`);
    }
    const src = readFileSync(join(bundleDir, matches[0]), "utf8");
    if (!src.includes(`var ${global};`)) {
      throw new Error(`${matches[0]} does not declare the global ${global}`);
    }
    out.set(`/sdk/${name}.js`, src);
  }
  return out;
}

const HTML = `<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>otpd supertokens-web-js e2e</title>
${BUNDLES.map(([name]) => `<script src="/sdk/${name}.js"></script>`).join("\n")}
<script src="/app.js"></script>
</head>
<body><p id="status">loading</p></body>
</html>
`;

// app.js: init the SDK as an application would, and expose small wrappers
// (window.e2e) that the test calls through page.evaluate. The wrappers
// return plain JSON: the SDK's fetchResponse is replaced by its HTTP status,
// and an exception (the SDK throws the Response on an unexpected HTTP
// status, STGeneralError on GENERAL_ERROR) becomes {thrown: "..."}.
const APP_JS = `"use strict";
(function () {
  var cfg = window.__otpdE2E;
  if (!cfg) {
    document.getElementById("status").textContent = "no config";
    return;
  }
  var Session = supertokensSession;
  var Passwordless = supertokensPasswordless;
  supertokens.init({
    appInfo: { appName: "otpd-e2e", apiDomain: cfg.apiDomain, apiBasePath: ${JSON.stringify(API_BASE_PATH)} },
    recipeList: [Session.init({ tokenTransferMethod: cfg.mode }), Passwordless.init()],
  });

  async function describeError(e) {
    if (e instanceof Response) {
      var body = "";
      try { body = await e.text(); } catch (_) {}
      return "HTTP " + e.status + " " + e.url + " " + body;
    }
    if (e && e.isSuperTokensGeneralError) return "STGeneralError: " + e.message;
    return String((e && e.stack) || e);
  }
  async function wrap(p) {
    try {
      var r = await p;
      if (r && typeof r === "object" && "fetchResponse" in r) {
        var out = Object.assign({}, r);
        out.httpStatus = r.fetchResponse.status;
        delete out.fetchResponse;
        return out;
      }
      return r === undefined ? null : r;
    } catch (e) {
      return { thrown: await describeError(e) };
    }
  }

  window.e2e = {
    createCode: function (email) { return wrap(Passwordless.createCode({ email: email })); },
    resendCode: function () { return wrap(Passwordless.resendCode()); },
    consumeCode: function (userInputCode) {
      return wrap(Passwordless.consumeCode(userInputCode === undefined ? undefined : { userInputCode: userInputCode }));
    },
    getLoginAttemptInfo: function () { return wrap(Passwordless.getLoginAttemptInfo()); },
    clearLoginAttemptInfo: function () { return wrap(Passwordless.clearLoginAttemptInfo()); },
    doesSessionExist: function () { return wrap(Session.doesSessionExist()); },
    getUserId: function () { return wrap(Session.getUserId()); },
    signOut: function () { return wrap(Session.signOut()); },
    // A plain fetch of the protected route: the SDK's interception adds the
    // credentials (Authorization header or cookies) and refreshes on 401.
    getSession: function () {
      return wrap((async function () {
        var r = await fetch(cfg.apiDomain + ${JSON.stringify(API_BASE_PATH)} + "/session");
        var text = await r.text();
        var body = null;
        try { body = JSON.parse(text); } catch (_) { body = text; }
        return { status: r.status, body: body };
      })());
    },
  };

  // The magic link's landing page consumes the link code from the URL.
  if (location.pathname === "/auth/verify") {
    window.verifyResult = wrap(Passwordless.consumeCode());
  }
  document.getElementById("status").textContent = "ready";
})();
`;

// startPageServer serves the page on 127.0.0.1 and resolves to
// {origin, requests, stop}; requests records every path served.
export async function startPageServer() {
  const bundles = loadBundles();
  const requests = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    requests.push({ method: req.method, path: url.pathname, search: url.search });
    let body;
    let type;
    if (url.pathname === "/" || url.pathname === "/auth/verify") {
      body = HTML;
      type = "text/html; charset=utf-8";
    } else if (url.pathname === "/app.js") {
      body = APP_JS;
      type = "text/javascript; charset=utf-8";
    } else if (bundles.has(url.pathname)) {
      body = bundles.get(url.pathname);
      type = "text/javascript; charset=utf-8";
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": type, "cache-control": "no-store" });
    res.end(req.method === "HEAD" ? undefined : body);
  });
  await new Promise((res, rej) => {
    server.once("error", rej);
    server.listen(0, "127.0.0.1", res);
  });
  const { port } = server.address();
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    stop: () =>
      new Promise((res) => {
        server.closeAllConnections();
        server.close(() => res());
      }),
  };
}
