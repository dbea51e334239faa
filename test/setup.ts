// Loaded by mocha before every suite (see .mocharc.js): its root hooks release what each test and each file started.
import 'reflect-metadata';
import { cleanupHooks } from './support/cleanup';

export const mochaHooks = cleanupHooks;
