#!/usr/bin/env bash
# Make sure RabbitMQ (with the management API) and PostgreSQL are running; start them if not.
# Fails (exit 1) when one cannot be started: broker and database tests must fail, not skip.
set -u

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq "$seconds"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "ensure-services: $what is not available after ${seconds}s" >&2
  return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5672; then
  echo "ensure-services: starting RabbitMQ" >&2
  rabbitmq-server -detached >/dev/null 2>&1 || true
fi
wait_for 90 "RabbitMQ on 127.0.0.1:5672" port_open 5672 || exit 1
if ! port_open 15672; then
  echo "ensure-services: enabling the RabbitMQ management plugin" >&2
  wait_for 60 "rabbitmqctl" rabbitmqctl -q status || exit 1
  rabbitmq-plugins enable -q rabbitmq_management >/dev/null 2>&1 || true
fi
wait_for 60 "the RabbitMQ management API on 127.0.0.1:15672" port_open 15672 || exit 1

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "ensure-services: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start >/dev/null 2>&1 || true
fi
wait_for 60 "PostgreSQL on 127.0.0.1:5432" pg_isready -q -h 127.0.0.1 -p 5432 || exit 1
