export { writeFileAtomic, writeFileAtomicAsync } from './atomic-file.js';
export { readDenyList, writeDenyList, denyListPath } from './deny-list-file.js';
