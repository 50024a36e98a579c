// Regenerates testdata/scrypt-kdf.json with the real npm package scrypt-kdf,
// the library Medusa v2's emailpass provider hashes passwords with.
//
// Run it outside the repository, next to an installed scrypt-kdf:
//
//	mkdir /tmp/skdf && cd /tmp/skdf && npm init -y && npm install scrypt-kdf
//	cp /path/to/otpd/password/testdata/gen-scrypt-kdf.js .
//	node gen-scrypt-kdf.js > scrypt-kdf.json
//
// To check hashes made by otpd against the real package (the other direction
// of compatibility), pass the fixture file: every entry is verified with
// scrypt-kdf, each otpd entry must verify, and the process exits non-zero if
// one does not:
//
//	node gen-scrypt-kdf.js verify /path/to/otpd/password/testdata/scrypt-kdf.json
//
// Works with scrypt-kdf 2.x (CommonJS, Buffer) and 3.x/4.x (ESM).
'use strict';

const fs = require('node:fs');

const passwords = [
    'supersecret123',
    '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/', // 64 characters
    'pässwörd-日本語-🔑',
    'correct horse battery staple',
    ' leading and trailing spaces ',
    'Cafe\u0301 au lait', // not NFKC: "e" + combining acute accent
];

const params = { logN: 15, r: 8, p: 1 };

async function main() {
    const mod = await import('scrypt-kdf');
    const Scrypt = mod.default ?? mod;
    const version = JSON.parse(fs.readFileSync(require.resolve('scrypt-kdf/package.json'))).version;
    const madeBy = `scrypt-kdf@${version}`;

    if (process.argv[2] === 'verify') {
        const fixture = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
        let failed = 0;
        for (const h of fixture.hashes) {
            const ok = await Scrypt.verify(Buffer.from(h.hash_base64, 'base64'), h.password);
            const wrong = await Scrypt.verify(Buffer.from(h.hash_base64, 'base64'), h.password + 'x');
            console.log(`${ok && !wrong ? 'ok  ' : 'FAIL'} ${h.made_by}: ${JSON.stringify(h.password)}`);
            if (!ok || wrong) failed++;
        }
        process.exit(failed ? 1 : 0);
    }

    const hashes = [];
    for (const password of passwords) {
        const key = await Scrypt.kdf(password, params);
        hashes.push({ password, hash_base64: Buffer.from(key).toString('base64'), made_by: madeBy });
    }
    const fixture = {
        comment: 'Made by testdata/gen-scrypt-kdf.js with the npm package scrypt-kdf; entries made_by "otpd" were made by password.Hash and verified with scrypt-kdf by the same script.',
        generator: madeBy,
        node: process.version,
        params,
        hashes,
    };
    process.stdout.write(JSON.stringify(fixture, null, 2) + '\n');
}

main().catch(err => { console.error(err); process.exit(1); });
