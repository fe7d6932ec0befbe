export { startPortcullis, type Portcullis, type StartOptions } from './portcullis.js';
