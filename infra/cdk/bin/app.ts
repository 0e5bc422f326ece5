#!/usr/bin/env node
/**
 * The CDK app: one ChatStack. Context (`-c key=value`, or cdk.json's "context"):
 * - `lambdaDir`: the built `bootstrap` binaries (default: the repository's .aws-sam/build, as
 *   infra/sam-build leaves them; cargo-lambda's target/lambda works too);
 * - `stackName`: the CloudFormation stack's name (default: chat-backend);
 * - any non-secret parameter of the stack by its name (e.g. `-c Stage=dev`): its new default.
 *   Parameters given to `cdk deploy --parameters Name=value` win over these defaults.
 */
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { ChatStack } from '../lib/chat-stack';
import { ParameterName, PARAMETERS } from '../lib/parameters';

const app = new App();
// build/bin/app.js -> the repository root is four levels up.
const repoRoot = path.resolve(__dirname, '..', '..', '..', '..');
const context = (key: string): string | undefined => {
  const value = app.node.tryGetContext(key);
  return value === undefined ? undefined : String(value);
};

const parameterDefaults: Partial<Record<ParameterName, string>> = {};
for (const name of Object.keys(PARAMETERS) as ParameterName[]) {
  const value = context(name);
  if (value !== undefined) {
    parameterDefaults[name] = value;
  }
}

new ChatStack(app, 'ChatBackend', {
  stackName: context('stackName') ?? 'chat-backend',
  lambdaDir: path.resolve(context('lambdaDir') ?? path.join(repoRoot, '.aws-sam', 'build')),
  parameterDefaults,
  // No CDKMetadata resource: the template carries only what the stack needs.
  analyticsReporting: false,
});
