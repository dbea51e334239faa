export * from './errors';
export * from './master-key';
export * from './keyring';
export * from './envelope-layout';
export * from './envelope';
