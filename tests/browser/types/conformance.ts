// The JavaScript of web/ against its declarations, web/chat-client.d.ts. Compiled, never run,
// by tsc in tests/browser/run (tests/browser/tsconfig.json, which also checks web/*.js
// themselves with --checkJs).
//
// `Declared` is what TypeScript users get: the .d.ts, which every import of chat-client.js
// resolves to. `impl` is chat-client.js itself, typed from its code and JSDoc: tsconfig.json
// maps the specifier 'chat-client-implementation' to the .js file.

import type * as Declared from '../../../web/chat-client.js';
import * as impl from 'chat-client-implementation';

// Every declared value is exported, and its type is one the declaration allows: each function
// takes the declared arguments and returns what is declared; each class constructs with the
// declared arguments and its instances have every declared member with its declared type.
export const implementsTheDeclarations: typeof Declared = impl;

// And nothing is exported that the declarations do not mention.
type Undeclared = Exclude<keyof typeof impl, keyof typeof Declared>;
export const everyExportIsDeclared: [Undeclared] extends [never] ? true : { undeclared: Undeclared } = true;
