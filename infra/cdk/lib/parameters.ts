/**
 * The stack's CloudFormation parameters, conditions and rules: the same names, types, defaults,
 * constraints and descriptions as template.yaml's, so `cdk deploy --parameters Name=value` takes
 * what `sam deploy --parameter-overrides Name=value` takes. They stay deploy-time parameters
 * (rather than values fixed at synth) so the secrets stay NoEcho and out of cdk.out, and one
 * synthesized template serves every stage. A non-secret parameter's default can also be given
 * as CDK context (`-c Stage=dev`); see bin/app.ts.
 */
import { CfnCondition, CfnParameter, CfnRule, Fn, ICfnConditionExpression } from 'aws-cdk-lib';
import { Construct } from 'constructs';

/** One parameter as template.yaml declares it. */
export interface ParameterSpec {
  readonly type: 'String' | 'Number';
  readonly default?: string | number;
  readonly noEcho?: boolean;
  readonly allowedPattern?: string;
  readonly allowedValues?: string[];
  readonly constraintDescription?: string;
  readonly minValue?: number;
  readonly maxValue?: number;
  readonly description: string;
}

const ssmName = '^(/[A-Za-z0-9_./-]+)?$';
const reserved = (fn: string): ParameterSpec => ({
  type: 'String',
  default: '',
  allowedPattern: '^[0-9]*$',
  description: `Reserved concurrency of the ${fn} function (also its cap). Empty or 0 - unset (the account's unreserved pool).`,
});

/** Every parameter of template.yaml, in its order. */
export const PARAMETERS = {
  Stage: {
    type: 'String',
    default: 'prod',
    allowedPattern: '^[A-Za-z0-9_-]{1,64}$',
    description: 'Stage name of the WebSocket API (part of its URL). The HTTP API uses its $default stage.',
  },
  WebhookSecret: {
    type: 'String',
    noEcho: true,
    default: '',
    allowedPattern: '^(.{16,})?$',
    constraintDescription: 'at least 16 characters, or empty with WebhookSecretParameter set',
    description:
      'HMAC secret shared with n8n (CHAT_WEBHOOK_SECRET), at least 16 characters; signs both directions. Empty - read from WebhookSecretParameter.',
  },
  WebhookSecretParameter: {
    type: 'String',
    default: '',
    allowedPattern: ssmName,
    description:
      'Name of an SSM SecureString parameter holding the webhook secret, e.g. /chat/prod/webhook-secret (CHAT_WEBHOOK_SECRET_PARAM). Empty - WebhookSecret is used.',
  },
  SessionSecret: {
    type: 'String',
    noEcho: true,
    default: '',
    allowedPattern: '^(.{16,})?$',
    constraintDescription: 'at least 16 characters, or empty with SessionSecretParameter set',
    description:
      'Secret that signs session tokens (CHAT_SESSION_SECRET), at least 16 characters. Empty - read from SessionSecretParameter.',
  },
  SessionSecretParameter: {
    type: 'String',
    default: '',
    allowedPattern: ssmName,
    description:
      'Name of an SSM SecureString parameter holding the session secret (CHAT_SESSION_SECRET_PARAM). Empty - SessionSecret is used.',
  },
  AuthJwtSecret: {
    type: 'String',
    noEcho: true,
    default: '',
    description:
      "HS256 secret of your app's own JWTs (CHAT_AUTH_JWT_SECRET, `sub` = user id). Empty (and no AuthJwtSecretParameter) - guest sessions only.",
  },
  AuthJwtSecretParameter: {
    type: 'String',
    default: '',
    allowedPattern: ssmName,
    description:
      'Name of an SSM SecureString parameter holding the app JWT secret (CHAT_AUTH_JWT_SECRET_PARAM). Empty - AuthJwtSecret is used.',
  },
  AuthJwksUrl: {
    type: 'String',
    default: '',
    allowedPattern: '^(https://\\S+)?$',
    description:
      'JWKS URL of your identity provider (CHAT_AUTH_JWKS_URL) for RS256/ES256 app JWTs, e.g. https://cognito-idp.<region>.amazonaws.com/<pool id>/.well-known/jwks.json. Fetched on first use, cached. Empty - no JWKS.',
  },
  AuthJwtAudience: {
    type: 'String',
    default: '',
    description:
      'Accepted `aud` of app JWTs, comma-separated (CHAT_AUTH_JWT_AUDIENCE); when set, tokens without it are refused. Empty - `aud` not checked.',
  },
  AuthJwtIssuer: {
    type: 'String',
    default: '',
    description:
      'Accepted `iss` of app JWTs, comma-separated (CHAT_AUTH_JWT_ISSUER); when set, tokens without it are refused. Empty - `iss` not checked.',
  },
  N8nWebhookUrl: {
    type: 'String',
    allowedPattern: '^https?://\\S+$',
    description: "URL of the n8n workflow's webhook that receives user messages (CHAT_N8N_WEBHOOK_URL).",
  },
  DispatchMaxAttempts: {
    type: 'Number',
    default: 3,
    minValue: 1,
    maxValue: 100,
    description:
      "Attempts to deliver a message to n8n before it is marked failed and dead-lettered (also the queue's maxReceiveCount).",
  },
  DispatchBackoffMs: {
    type: 'Number',
    default: 1000,
    minValue: 0,
    maxValue: 900000,
    description: 'First retry delay in milliseconds, doubled each time.',
  },
  DispatchTimeoutMs: {
    type: 'Number',
    default: 10000,
    minValue: 1,
    maxValue: 120000,
    description:
      'How long n8n may take to start answering a dispatch (its status and headers), in milliseconds. A workflow that answers whole only when its agent is done must do so within this.',
  },
  StreamTimeoutMs: {
    type: 'Number',
    default: 90000,
    minValue: 1,
    maxValue: 840000,
    description:
      "How long n8n's whole answer (a streamed one, or a body) may take, counted from the request, in milliseconds (CHAT_STREAM_TIMEOUT_MS). Keep it below ReplyTimeoutMs; the dispatch function times out after 900 s.",
  },
  N8nAuthHeader: {
    type: 'String',
    default: '',
    noEcho: true,
    allowedPattern: "^([!#$%&'*+.^_`|~0-9A-Za-z-]+:[ \\t]*[ -~]+)?$",
    description:
      "Header sent with every dispatch for the n8n node's own authentication, as 'Name: value' (CHAT_N8N_AUTH_HEADER), e.g. 'Authorization: Basic <base64 of user:password>'. Empty - none.",
  },
  WelcomeMessage: {
    type: 'String',
    default: '',
    description: "Stored as every new session's first assistant message (CHAT_WELCOME_MESSAGE). Empty - none.",
  },
  N8nSessionStart: {
    type: 'String',
    default: 'false',
    allowedValues: ['false', 'true'],
    description: "true - every new session asks n8n for a greeting (a dispatch with action 'sessionStart'; CHAT_N8N_SESSION_START).",
  },
  RetentionDaysGuest: {
    type: 'Number',
    default: 30,
    minValue: 1,
    maxValue: 36500,
    description: "Days a guest's conversation is kept after its last activity (CHAT_RETENTION_DAYS_GUEST).",
  },
  RetentionDaysUser: {
    type: 'Number',
    default: 365,
    minValue: 7,
    maxValue: 36500,
    description: "Days a signed-in user's conversation is kept after its last activity (CHAT_RETENTION_DAYS_USER).",
  },
  EditWindowSeconds: {
    type: 'Number',
    default: 300,
    minValue: 0,
    maxValue: 604800,
    description: 'Seconds after sending during which a sender may edit or delete their message; 0 never (CHAT_EDIT_WINDOW_S).',
  },
  MaxContentChars: {
    type: 'Number',
    default: 4000,
    minValue: 1,
    maxValue: 1000000,
    description: 'Longest user message, in characters.',
  },
  RateMessagesPerMinute: {
    type: 'Number',
    default: 10,
    minValue: 1,
    description: 'Messages per session per minute.',
  },
  RateSessionsPer5Min: {
    type: 'Number',
    default: 3,
    minValue: 1,
    description: 'New sessions per client IP per 5 minutes.',
  },
  RateWebhooksPerMinute: {
    type: 'Number',
    default: 60,
    minValue: 1,
    description: 'Webhook calls (n8n replies) per session per minute; refused (unsigned) calls are limited per source IP.',
  },
  MaxReplyChars: {
    type: 'Number',
    default: 16000,
    minValue: 1,
    maxValue: 1000000,
    description: 'Longest reply (from n8n), in characters.',
  },
  ReplyTimeoutMs: {
    type: 'Number',
    default: 120000,
    minValue: 1000,
    maxValue: 900000,
    description:
      'How long a user message waits for its reply before it is marked failed and the user is told (at most 15 minutes, the longest SQS delay).',
  },
  HandoffTimeoutMs: {
    type: 'String',
    default: '',
    allowedPattern: '^([0-9]{4,8})?$',
    description:
      'How long a session waits for a person before the bot resumes, in milliseconds (CHAT_HANDOFF_TIMEOUT_MS, 1000 to 86400000). Empty - it waits until an agent claims or releases it.',
  },
  AlarmTopicArn: {
    type: 'String',
    default: '',
    description:
      'Optional SNS topic ARN notified by every alarm (function errors and throttles, dispatch failure rate, p99 answer latency, the dead-letter queue). Empty - the alarms have no action.',
  },
  AnswerLatencyAlarmMs: {
    type: 'Number',
    default: 60000,
    minValue: 1,
    description:
      'The p99 answer latency (user message stored to its reply stored, over 5 minutes) in milliseconds above which the AnswerLatencyAlarm goes off.',
  },
  HttpThrottlingRateLimit: {
    type: 'Number',
    default: 100,
    minValue: 0,
    description: 'Steady requests per second across every route of the HTTP API ($default stage).',
  },
  HttpThrottlingBurstLimit: {
    type: 'Number',
    default: 200,
    minValue: 0,
    description: 'Burst (token bucket size) of the HTTP API stage.',
  },
  CreateSessionThrottlingRateLimit: {
    type: 'Number',
    default: 10,
    minValue: 0,
    description: 'Steady requests per second of POST /sessions (also limited per client IP by RateSessionsPer5Min).',
  },
  CreateSessionThrottlingBurstLimit: {
    type: 'Number',
    default: 20,
    minValue: 0,
    description: 'Burst of POST /sessions.',
  },
  WebSocketThrottlingRateLimit: {
    type: 'Number',
    default: 100,
    minValue: 0,
    description: 'Steady messages per second across every route of the WebSocket stage.',
  },
  WebSocketThrottlingBurstLimit: {
    type: 'Number',
    default: 200,
    minValue: 0,
    description: 'Burst of the WebSocket stage.',
  },
  ChatterThrottlingRateLimit: {
    type: 'Number',
    default: 20,
    minValue: 0,
    description: "Steady frames per second of each of the typing and ping routes (the stage's share they may take).",
  },
  ChatterThrottlingBurstLimit: {
    type: 'Number',
    default: 40,
    minValue: 0,
    description: 'Burst of each of the typing and ping routes.',
  },
  SessionReservedConcurrency: reserved('session'),
  SendReservedConcurrency: reserved('send'),
  WebhookReservedConcurrency: reserved('webhook'),
  ConnectReservedConcurrency: reserved('connect'),
  DisconnectReservedConcurrency: reserved('disconnect'),
  DispatchReservedConcurrency: reserved('dispatch'),
  AgentReservedConcurrency: reserved('agent'),
} satisfies Record<string, ParameterSpec>;

export type ParameterName = keyof typeof PARAMETERS;

/** The stack's parameters by name, as tokens (`.valueAsString`, `.valueAsNumber`). */
export type Parameters = Record<ParameterName, CfnParameter>;

/**
 * Declares every parameter on `scope` (a stack: the logical ids are the names). `defaults`
 * replaces a declared default (CDK context or stack props).
 */
export function declareParameters(scope: Construct, defaults: Partial<Record<ParameterName, string>> = {}): Parameters {
  const out: Partial<Parameters> = {};
  for (const [name, spec] of Object.entries(PARAMETERS) as [ParameterName, ParameterSpec][]) {
    const given = defaults[name];
    if (given !== undefined && spec.noEcho) {
      throw new Error(`${name} is a secret: give it at deploy time (--parameters ${name}=...), never as context or props`);
    }
    out[name] = new CfnParameter(scope, name, {
      type: spec.type,
      default: given ?? spec.default,
      noEcho: spec.noEcho,
      allowedPattern: spec.allowedPattern,
      allowedValues: spec.allowedValues,
      constraintDescription: spec.constraintDescription,
      minValue: spec.minValue,
      maxValue: spec.maxValue,
      description: spec.description,
    });
  }
  return out as Parameters;
}

/** The template's conditions, by name. */
export interface Conditions {
  readonly HasAuthJwtSecret: CfnCondition;
  readonly HasWebhookSecretParameter: CfnCondition;
  readonly HasSessionSecretParameter: CfnCondition;
  readonly HasAuthJwtSecretParameter: CfnCondition;
  readonly HasSecretParameters: CfnCondition;
  readonly HasAlarmTopic: CfnCondition;
  readonly HasSessionStart: CfnCondition;
  /** HasSessionReservedConcurrency and its siblings, by the function's construct id. */
  readonly reservedConcurrency: Record<string, CfnCondition>;
}

const notEmpty = (p: CfnParameter): ICfnConditionExpression => Fn.conditionNot(Fn.conditionEquals(p.valueAsString, ''));

/** Declares the conditions of template.yaml on `scope` (same names and expressions). */
export function declareConditions(scope: Construct, p: Parameters): Conditions {
  const condition = (name: string, expression: ICfnConditionExpression) => new CfnCondition(scope, name, { expression });
  const HasAuthJwtSecret = condition('HasAuthJwtSecret', notEmpty(p.AuthJwtSecret));
  const HasWebhookSecretParameter = condition('HasWebhookSecretParameter', notEmpty(p.WebhookSecretParameter));
  const HasSessionSecretParameter = condition('HasSessionSecretParameter', notEmpty(p.SessionSecretParameter));
  const HasAuthJwtSecretParameter = condition('HasAuthJwtSecretParameter', notEmpty(p.AuthJwtSecretParameter));
  const HasSecretParameters = condition(
    'HasSecretParameters',
    Fn.conditionOr(HasWebhookSecretParameter, HasSessionSecretParameter, HasAuthJwtSecretParameter),
  );
  const HasAlarmTopic = condition('HasAlarmTopic', notEmpty(p.AlarmTopicArn));
  const HasSessionStart = condition('HasSessionStart', Fn.conditionEquals(p.N8nSessionStart.valueAsString, 'true'));
  const reservedConcurrency: Record<string, CfnCondition> = {};
  for (const fn of ['Session', 'Send', 'Webhook', 'Connect', 'Disconnect', 'Dispatch', 'Agent']) {
    const value = p[`${fn}ReservedConcurrency` as ParameterName].valueAsString;
    reservedConcurrency[`${fn}Function`] = condition(
      `Has${fn}ReservedConcurrency`,
      Fn.conditionNot(Fn.conditionOr(Fn.conditionEquals(value, ''), Fn.conditionEquals(value, '0'))),
    );
  }
  return {
    HasAuthJwtSecret,
    HasWebhookSecretParameter,
    HasSessionSecretParameter,
    HasAuthJwtSecretParameter,
    HasSecretParameters,
    HasAlarmTopic,
    HasSessionStart,
    reservedConcurrency,
  };
}

/** The template's rules: each required secret given exactly one way, the JWT secret at most one. */
export function declareRules(scope: Construct, p: Parameters): void {
  const exactlyOne = (value: ParameterName, parameter: ParameterName) => {
    const [v, n] = [p[value].valueAsString, p[parameter].valueAsString];
    const assertDescription = `Set exactly one of ${value} and ${parameter}.`;
    return [
      { assert: Fn.conditionNot(Fn.conditionEquals(v, n)), assertDescription },
      { assert: Fn.conditionOr(Fn.conditionEquals(v, ''), Fn.conditionEquals(n, '')), assertDescription },
    ];
  };
  new CfnRule(scope, 'WebhookSecretGivenOnce', { assertions: exactlyOne('WebhookSecret', 'WebhookSecretParameter') });
  new CfnRule(scope, 'SessionSecretGivenOnce', { assertions: exactlyOne('SessionSecret', 'SessionSecretParameter') });
  new CfnRule(scope, 'AuthJwtSecretGivenOnce', {
    assertions: [
      {
        assert: Fn.conditionOr(Fn.conditionEquals(p.AuthJwtSecret.valueAsString, ''), Fn.conditionEquals(p.AuthJwtSecretParameter.valueAsString, '')),
        assertDescription: 'Set at most one of AuthJwtSecret and AuthJwtSecretParameter.',
      },
    ],
  });
}
