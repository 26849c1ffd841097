#!/usr/bin/env node
// Entry point. It holds SIGHUP, SIGTERM and SIGINT (early-signals.ts) before it loads the command
// line and everything behind it: ESM links a module's whole static import graph before it runs
// any of it, which takes a few hundred milliseconds here, and until a handler is installed a
// SIGHUP kills the process (SIGTERM and SIGINT too, without an orderly shutdown).
import './early-signals.js';

await import('./command.js');
