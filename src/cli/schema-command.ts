import { configJsonSchema } from '../config/index.js';

export function runSchema(): void {
  process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
}
