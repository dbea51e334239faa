// Loaded by mocha before every suite (see .mocharc.json).
import 'reflect-metadata';
