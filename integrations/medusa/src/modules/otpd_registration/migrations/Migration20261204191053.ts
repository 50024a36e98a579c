import { Migration } from "@medusajs/framework/mikro-orm/migrations";

export class Migration20261204191053 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`alter table if exists "otpd_account_deletion_request" drop constraint if exists "otpd_account_deletion_request_customer_id_unique";`);
    this.addSql(`alter table if exists "otpd_account_deletion_audit" drop constraint if exists "otpd_account_deletion_audit_request_id_unique";`);
    this.addSql(`create table if not exists "otpd_account_deletion_audit" ("id" text not null, "request_id" text not null, "customer_id" text not null, "completed_at" timestamptz not null, "removed" jsonb not null, "created_at" timestamptz not null default now(), "updated_at" timestamptz not null default now(), "deleted_at" timestamptz null, constraint "otpd_account_deletion_audit_pkey" primary key ("id"));`);
    this.addSql(`CREATE INDEX IF NOT EXISTS "IDX_otpd_account_deletion_audit_deleted_at" ON "otpd_account_deletion_audit" ("deleted_at") WHERE deleted_at IS NULL;`);
    this.addSql(`CREATE UNIQUE INDEX IF NOT EXISTS "IDX_otpd_account_deletion_audit_request_id_unique" ON "otpd_account_deletion_audit" ("request_id") WHERE deleted_at IS NULL;`);

    this.addSql(`create table if not exists "otpd_account_deletion_request" ("id" text not null, "customer_id" text not null, "status" text check ("status" in ('pending', 'confirmed', 'completed', 'cancelled')) not null default 'pending', "reason" text null, "scheduled_for" timestamptz null, "confirmed_at" timestamptz null, "completed_at" timestamptz null, "cancelled_at" timestamptz null, "created_at" timestamptz not null default now(), "updated_at" timestamptz not null default now(), "deleted_at" timestamptz null, constraint "otpd_account_deletion_request_pkey" primary key ("id"));`);
    this.addSql(`CREATE INDEX IF NOT EXISTS "IDX_otpd_account_deletion_request_deleted_at" ON "otpd_account_deletion_request" ("deleted_at") WHERE deleted_at IS NULL;`);
    this.addSql(`CREATE INDEX IF NOT EXISTS "IDX_otpd_account_deletion_request_customer_id" ON "otpd_account_deletion_request" ("customer_id") WHERE deleted_at IS NULL;`);
    this.addSql(`CREATE UNIQUE INDEX IF NOT EXISTS "IDX_otpd_account_deletion_request_customer_id_unique" ON "otpd_account_deletion_request" ("customer_id") WHERE status IN ('pending', 'confirmed') AND deleted_at IS NULL;`);
    this.addSql(`CREATE INDEX IF NOT EXISTS "IDX_otpd_account_deletion_request_status_scheduled_for" ON "otpd_account_deletion_request" ("status", "scheduled_for") WHERE deleted_at IS NULL;`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "otpd_account_deletion_audit" cascade;`);

    this.addSql(`drop table if exists "otpd_account_deletion_request" cascade;`);
  }

}
