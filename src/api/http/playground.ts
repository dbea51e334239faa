// GET /graphql and GET / in a browser: a self-hosted GraphiQL. Its assets come from node_modules (no CDN), under
// /playground/assets. Clients that ask for JSON, and every POST and WebSocket, go on to the API untouched.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type Request, type Response, Router } from 'express';
import type { Logger } from '../../logging/logger';
import {
  defaultPlaygroundConfig,
  PLAYGROUND_ASSETS_PATH,
  PLAYGROUND_CSP,
  PLAYGROUND_CSS,
  PLAYGROUND_SCRIPT,
  playgroundHtml,
} from './playground-page';

/** Files served from installed packages: [package, path inside it]. */
const PACKAGE_ASSETS: Record<string, [string, string]> = {
  'react.production.min.js': ['react', 'umd/react.production.min.js'],
  'react-dom.production.min.js': ['react-dom', 'umd/react-dom.production.min.js'],
  'graphiql.min.js': ['graphiql', 'graphiql.min.js'],
  'graphiql.min.css': ['graphiql', 'graphiql.min.css'],
  'graphql-ws.min.js': ['graphql-ws', 'umd/graphql-ws.min.js'],
};

const GENERATED_ASSETS: Record<string, { type: string; body: string; etag: string }> = {
  'playground.js': { type: 'text/javascript; charset=utf-8', body: PLAYGROUND_SCRIPT, etag: etagOf(PLAYGROUND_SCRIPT) },
  'playground.css': { type: 'text/css; charset=utf-8', body: PLAYGROUND_CSS, etag: etagOf(PLAYGROUND_CSS) },
};

export function playground(logger: Logger): Router {
  const files = resolvePackageAssets(logger);
  const html = playgroundHtml(defaultPlaygroundConfig('/graphql'));
  const page = { html, etag: etagOf(html) };
  const router = Router();

  router.get(`${PLAYGROUND_ASSETS_PATH}/:name`, (req, res, next) => {
    const name = String(req.params.name);
    const generated = GENERATED_ASSETS[name];
    if (generated) {
      res.setHeader('Cache-Control', 'no-cache').setHeader('ETag', generated.etag).type(generated.type).send(generated.body);
      return;
    }
    const file = files.get(name);
    if (!file) return next();
    // no-cache: revalidated by ETag, so an upgraded package is picked up at once.
    res.sendFile(file.path, { cacheControl: false, headers: { 'Cache-Control': 'no-cache', ETag: file.etag } }, (error) => {
      if (error && !res.headersSent) next(error);
    });
  });

  router.get(['/', '/graphql'], (req, res, next) => {
    if (!prefersHtml(req)) return next();
    sendPage(res, page);
  });
  return router;
}

/** A browser navigating here (Accept: text/html first); curl (any) and GraphQL clients (JSON) are not. */
function prefersHtml(req: Request): boolean {
  return req.accepts(['application/json', 'application/graphql-response+json', 'text/html']) === 'text/html';
}

function sendPage(res: Response, { html, etag }: { html: string; etag: string }): void {
  res
    .status(200)
    .setHeader('Content-Security-Policy', PLAYGROUND_CSP)
    .setHeader('X-Content-Type-Options', 'nosniff')
    .setHeader('Referrer-Policy', 'no-referrer')
    .setHeader('Cache-Control', 'no-cache')
    .setHeader('ETag', etag)
    .type('html')
    .send(html);
}

/**
 * A fixed text's ETag, computed once (the app computes none: see server.ts). With it set, express answers a request
 * whose If-None-Match matches with 304 (and so does sendFile).
 */
function etagOf(text: string): string {
  return `"${createHash('sha256').update(text).digest('base64url').slice(0, 27)}"`;
}

/** The installed files, each with an ETag from its size and modification time (as express's own would be). */
function resolvePackageAssets(logger: Logger): Map<string, { path: string; etag: string }> {
  const files = new Map<string, { path: string; etag: string }>();
  for (const [name, [pkg, path]] of Object.entries(PACKAGE_ASSETS)) {
    const dir = packageDir(pkg);
    const file = dir ? join(dir, path) : null;
    if (file && existsSync(file)) {
      const { size, mtimeMs } = statSync(file);
      files.set(name, { path: file, etag: `W/"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"` });
    } else {
      logger.warn({ package: pkg, path }, 'playground asset not found; reinstall dependencies (npm ci)');
    }
  }
  return files;
}

/** The installed package's root: upwards from its entry point to the package.json that names it. */
function packageDir(pkg: string): string | null {
  let dir: string;
  try {
    dir = dirname(require.resolve(pkg));
  } catch {
    return null;
  }
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === pkg) return dir;
      } catch {
        // A package.json that is not JSON: keep looking upwards.
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}
